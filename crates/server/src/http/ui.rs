//! The web UI (`frontend/`, built by Vite into `frontend/dist`), embedded in the binary and
//! served at `/`: `index.html` for `/`, hashed assets under `/assets/` with a year-long cache
//! (their names change with their content), and nothing else (the UI routes by `#/page`).
//!
//! `frontend/dist` is committed, so a node built with only the Rust toolchain serves the
//! UI; the test script rebuilds it and fails when the committed copy is stale.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../frontend/dist");

pub(crate) async fn index() -> Response {
    match DIST.get_file("index.html") {
        Some(file) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            file.contents(),
        )
            .into_response(),
        None => {
            (StatusCode::NOT_FOUND, "the web UI was not built into this binary").into_response()
        }
    }
}

pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let Some(file) = DIST.get_file(format!("assets/{name}")) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type(&name)),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        file.contents(),
    )
        .into_response()
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "json" | "map" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_ui_is_embedded_and_its_assets_exist() {
        let index = DIST.get_file("index.html").expect("frontend/dist/index.html is embedded");
        let html = index.contents_utf8().expect("utf-8");
        // Every asset index.html loads is embedded under the name it loads it by.
        let assets: Vec<&str> = html
            .split("/assets/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or(""))
            .collect();
        assert!(!assets.is_empty(), "{html}");
        for asset in assets {
            assert!(DIST.get_file(format!("assets/{asset}")).is_some(), "{asset} missing");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index-abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index-abc.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
