//! Who may use the HTTP door, checked by [`authenticate`] before any route runs (for
//! `/ws/live` before the WebSocket upgrade).
//!
//! **Browsers.** A page on another origin must not use a node through its visitor's browser
//! (cross-site request forgery), nor may a page whose host name was rebound to the node's
//! address (DNS rebinding). So, on every route but the static web UI and the health checks:
//! - `Sec-Fetch-Site: cross-site` or `same-site` is refused (403);
//! - an `Origin` must name the host the request was sent to (`Host`), or it is refused;
//!   without `Origin`, a `Referer` on a request that changes something must;
//! - on an open node (no users), `Host` must be an IP address or `localhost`: a rebound name
//!   is refused. (With users, a rebound page has no credentials to send: the session cookie
//!   is `SameSite=Strict` and bound to the real host.)
//!
//! Clients that are not browsers (curl, Telegraf, InfluxDB client libraries, Grafana's
//! back end) send none of these headers and are not affected.
//!
//! **Credentials**, when the node has users: `Authorization: Bearer <token>`, InfluxDB's
//! `Authorization: Token <token>`, `Authorization: Basic` (user and password), `?u=&p=` on the
//! InfluxDB 1 and 2 write routes (as Telegraf and InfluxDB clients send them), or the web UI's
//! session cookie (`POST /api/v1/login`). Without valid ones: 401. A role that does not allow
//! the route: 403. `/health`, `/ping` and the UI's static files are always open; `/metrics`
//! needs an admin unless the node was started with `--metrics-public`.
//!
//! The [`Principal`] is handed to the routes as a request extension; SQL statements are
//! checked against its role again (`DELETE` and `system.*` need an admin).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use minitrue_auth::{
    cookie_value, parse_authorization, Credential, Door, Gatekeeper, Principal, Role,
};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, HttpState};

/// The web UI's session cookie.
pub(crate) const SESSION_COOKIE: &str = "minitrue_session";
/// The role a route needs; `None`: open to everyone.
fn route_needs(method: &Method, path: &str, metrics_public: bool) -> Option<Role> {
    match path {
        _ if is_static(path) => None,
        "/api/v1/login" | "/api/v1/logout" => None,
        "/metrics" => (!metrics_public).then_some(Role::Admin),
        "/api/v1/write" | "/api/v2/write" | "/write" => Some(Role::Writer),
        "/api/v1/cluster/decommission" if method != Method::GET => Some(Role::Admin),
        _ => Some(Role::Reader),
    }
}

/// Whether a route is one a browser loads as a page or a file (no browser checks).
fn is_static(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/ping") || path.starts_with("/assets/")
}

/// Credentials as a request presents them.
enum Presented {
    Header(Credential),
    Session(String),
}

fn presented(request: &Request<Body>) -> Result<Option<Presented>, ApiError> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let credential = parse_authorization(value.as_bytes())
            .map_err(|error| unauthorized(&error.to_string()))?;
        return Ok(Some(Presented::Header(credential)));
    }
    let path = request.uri().path();
    if matches!(path, "/write" | "/api/v2/write") {
        let query = request.uri().query().unwrap_or("");
        let pairs: HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        if let (Some(user), Some(password)) = (pairs.get("u"), pairs.get("p")) {
            let credential =
                Credential::Password { user: user.clone(), password: password.clone() };
            return Ok(Some(Presented::Header(credential)));
        }
    }
    Ok(session_cookie(headers).map(Presented::Session))
}

/// The session id in the request's `Cookie` headers.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|value| cookie_value(value.as_bytes(), SESSION_COOKIE))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.to_string(),
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError { status: StatusCode::FORBIDDEN, code: "forbidden", message }
}

/// `host[:port]` of an `Origin` or `Referer` URL, lower case.
fn url_authority(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

/// The browser checks of the module documentation.
fn check_browser(request: &Request<Body>, open: bool) -> Result<(), ApiError> {
    let headers = request.headers();
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).map(str::to_ascii_lowercase);
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if matches!(site, "cross-site" | "same-site") {
            return Err(forbidden(format!("a request from another site ({site}) is refused")));
        }
    }
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let origin = match (text(header::ORIGIN), text(header::REFERER)) {
        (Some(origin), _) => Some(origin),
        (None, Some(referer)) if changes => Some(referer),
        _ => None,
    };
    if let Some(origin) = origin {
        if url_authority(origin).is_none() || url_authority(origin) != host {
            return Err(forbidden(format!(
                "a request from the page {origin} to {} is refused (cross-origin)",
                host.as_deref().unwrap_or("this node")
            )));
        }
    }
    if open && !host.as_deref().is_some_and(is_local_host) {
        return Err(forbidden(format!(
            "Host {:?} is not this node's address: use its IP address or localhost",
            host.unwrap_or_default()
        )));
    }
    Ok(())
}

/// An IP address or `localhost`, with an optional port.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            match port.chars().all(|c| c.is_ascii_digit()) {
                true => name,
                false => host,
            }
        }),
    };
    name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok()
}

/// The middleware: browser checks, credentials, the route's role; the principal goes on as
/// a request extension.
pub(crate) async fn authenticate(
    State(state): State<Arc<HttpState>>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    match admit(&state, &request) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => {
            let mut response = error.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"minitrue\""),
                );
            }
            response
        }
    }
}

fn peer(request: &Request<Body>) -> Option<SocketAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0)
}

fn admit(state: &HttpState, request: &Request<Body>) -> Result<Principal, ApiError> {
    let gate = &state.gate;
    let required = gate.required();
    let path = request.uri().path();
    if !is_static(path) {
        check_browser(request, !required)?;
    }
    let Some(needed) = route_needs(request.method(), path, state.metrics_public) else {
        return Ok(Gatekeeper::open_access("anonymous"));
    };
    if !required {
        return Ok(Gatekeeper::open_access("anonymous"));
    }
    let peer = peer(request);
    let principal = match presented(request)? {
        None => return Err(unauthorized("authentication required: send a token or a password")),
        Some(Presented::Header(Credential::Token(token))) => gate.token(Door::Http, peer, &token),
        Some(Presented::Header(Credential::Password { user, password })) => {
            gate.password(Door::Http, peer, &user, &password)
        }
        Some(Presented::Session(id)) => {
            return match gate.session(&id) {
                Some(principal) => authorize(gate, peer, principal, needed, path),
                None => Err(unauthorized("the login has ended: log in again")),
            };
        }
    }
    .map_err(|_| unauthorized("authentication failed"))?;
    authorize(gate, peer, principal, needed, path)
}

fn authorize(
    gate: &Gatekeeper,
    peer: Option<SocketAddr>,
    principal: Principal,
    needed: Role,
    path: &str,
) -> Result<Principal, ApiError> {
    if principal.role >= needed {
        return Ok(principal);
    }
    gate.denied(Door::Http, peer, &principal, path);
    Err(forbidden(format!(
        "permission denied: {path} needs the {needed} role, and {} has the {} role",
        principal.name, principal.role
    )))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    user: String,
    password: String,
}

/// `POST /api/v1/login` `{"user","password"}`: the web UI's login; sets the session cookie.
pub(crate) async fn login(
    State(state): State<Arc<HttpState>>,
    connect: Option<ConnectInfo<SocketAddr>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let login: Login = serde_json::from_slice(&body).map_err(|error| {
        ApiError::invalid(format!("expected {{\"user\",\"password\"}}: {error}"))
    })?;
    let peer = connect.map(|info| info.0);
    let principal = state
        .gate
        .password(Door::Http, peer, &login.user, &login.password)
        .map_err(|_| unauthorized("wrong user name or password"))?;
    let id = state.gate.open_session(&principal).map_err(|error| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal error",
        message: error.to_string(),
    })?;
    let secure = match state.secure_cookies {
        true => "; Secure",
        false => "",
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        minitrue_auth::sessions::SESSION_LIFETIME.as_secs()
    );
    let body = Json(json!({"user": principal.name, "role": principal.role.as_str()}));
    let mut response = body.into_response();
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::invalid(e.to_string()))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /api/v1/logout`: ends the UI session.
pub(crate) async fn logout(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.gate.close_session(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("minitrue_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `GET /api/v1/whoami`: who the request authenticated as, and whether the node asks at all.
pub(crate) async fn whoami(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
) -> Json<serde_json::Value> {
    Json(json!({
        "user": principal.name,
        "role": principal.role.as_str(),
        "auth_required": state.gate.required(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn routes_need_their_roles() {
        assert_eq!(route_needs(&Method::GET, "/health", false), None);
        assert_eq!(route_needs(&Method::GET, "/assets/index.js", false), None);
        assert_eq!(route_needs(&Method::GET, "/metrics", false), Some(Role::Admin));
        assert_eq!(route_needs(&Method::GET, "/metrics", true), None);
        assert_eq!(route_needs(&Method::POST, "/write", false), Some(Role::Writer));
        assert_eq!(route_needs(&Method::POST, "/api/v1/sql", false), Some(Role::Reader));
        assert_eq!(route_needs(&Method::GET, "/ws/live", false), Some(Role::Reader));
        assert_eq!(
            route_needs(&Method::POST, "/api/v1/cluster/decommission", false),
            Some(Role::Admin)
        );
        assert_eq!(
            route_needs(&Method::GET, "/api/v1/cluster/decommission", false),
            Some(Role::Reader)
        );
        assert_eq!(route_needs(&Method::GET, "/anything/else", false), Some(Role::Reader));
    }

    #[test]
    fn pages_of_other_origins_and_rebound_names_are_refused() {
        let host = ("host", "127.0.0.1:8080");
        let ok = [
            request("POST", "/api/v1/sql", &[host]),
            request("POST", "/api/v1/sql", &[host, ("origin", "http://127.0.0.1:8080")]),
            request("POST", "/api/v1/sql", &[host, ("sec-fetch-site", "same-origin")]),
            request("GET", "/api/v1/cluster", &[host, ("referer", "http://evil.example/")]),
            request("POST", "/write", &[("host", "localhost:8080")]),
            request("POST", "/write", &[("host", "[::1]:8080")]),
        ];
        for request in &ok {
            assert!(check_browser(request, true).is_ok(), "{:?}", request.headers());
        }
        let refused = [
            request("POST", "/api/v1/sql", &[host, ("origin", "http://evil.example")]),
            request("POST", "/api/v1/sql", &[host, ("origin", "null")]),
            request("POST", "/api/v1/sql", &[host, ("origin", "http://127.0.0.1:9999")]),
            request("POST", "/api/v1/sql", &[host, ("sec-fetch-site", "cross-site")]),
            request("POST", "/api/v1/sql", &[host, ("referer", "http://evil.example/x")]),
            request("GET", "/ws/live", &[host, ("origin", "http://evil.example")]),
            // DNS rebinding: the page's own name, resolved to the node.
            request("POST", "/api/v1/sql", &[("host", "evil.example:8080")]),
            request("GET", "/api/v1/sql", &[("host", "evil.example:8080")]),
        ];
        for request in &refused {
            assert!(check_browser(request, true).is_err(), "{:?}", request.headers());
        }
        // With users, a name is fine (the credentials protect the node).
        let named = request("POST", "/api/v1/sql", &[("host", "minitrue.lan:8080")]);
        assert!(check_browser(&named, false).is_ok());
    }

    #[test]
    fn credentials_are_read_from_every_place_clients_put_them() {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:wonder:land")
        );
        let cases = [
            request("GET", "/x", &[("authorization", "Bearer mt_abc")]),
            request("GET", "/x", &[("authorization", "Token mt_abc")]),
            request("GET", "/x", &[("authorization", basic.as_str())]),
            request("POST", "/write?db=x&u=alice&p=wonder%3Aland", &[]),
            request("GET", "/x", &[("cookie", "a=b; minitrue_session=s1; c=d")]),
        ];
        let seen: Vec<String> = cases
            .iter()
            .map(|r| match presented(r).unwrap() {
                Some(Presented::Header(Credential::Token(t))) => format!("token {t}"),
                Some(Presented::Header(Credential::Password { user, password })) => {
                    format!("{user}/{password}")
                }
                Some(Presented::Session(id)) => format!("session {id}"),
                None => "none".to_string(),
            })
            .collect();
        assert_eq!(
            seen,
            [
                "token mt_abc",
                "token mt_abc",
                "alice/wonder:land",
                "alice/wonder:land",
                "session s1"
            ]
        );
        assert!(presented(&request("POST", "/api/v1/sql?u=a&p=b", &[])).unwrap().is_none());
        assert!(presented(&request("GET", "/x", &[("authorization", "Basic !!")])).is_err());
        assert!(presented(&request("GET", "/x", &[("authorization", "Digest x")])).is_err());
    }
}
