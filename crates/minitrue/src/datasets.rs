//! Reading point files: the smart-city generator's CSV and the NAB CSV files (used by the
//! benchmarks and by `minitrue import`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use minitrue_common::{Point, SeriesKey};

/// `../shared` from the working directory, else from the repository root.
pub fn default_shared_dir() -> PathBuf {
    let candidates = [
        PathBuf::from("../shared"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    ];
    candidates
        .iter()
        .find(|p| p.join("bench/smartcity.py").exists())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// Runs `smartcity.py` with `args` (csv format) and parses its output.
pub fn smartcity(python: &str, shared: &Path, args: &[&str]) -> anyhow::Result<Vec<Point>> {
    let script = shared.join("bench/smartcity.py");
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .args(["--format", "csv"])
        .output()
        .with_context(|| format!("running {} {}", python, script.display()))?;
    if !output.status.success() {
        bail!("smartcity.py failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse_time_device_metric_value_csv(&String::from_utf8(output.stdout)?)
}

/// `time_ns,device_id,metric,value` with a header line.
pub fn parse_time_device_metric_value_csv(text: &str) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut keys: std::collections::HashMap<(String, String), SeriesKey> = Default::default();
    for (n, line) in text.lines().enumerate().skip(1) {
        let mut fields = line.split(',');
        let (Some(t), Some(d), Some(m), Some(v)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("line {}: expected 4 fields", n + 1);
        };
        let key = match keys.get(&(d.to_string(), m.to_string())) {
            Some(key) => key.clone(),
            None => {
                let key = SeriesKey::new(d, m)?;
                keys.insert((d.to_string(), m.to_string()), key.clone());
                key
            }
        };
        points.push(Point::new(key, t.parse()?, v.parse()?));
    }
    Ok(points)
}

/// A NAB file (`timestamp,value`, timestamps `YYYY-MM-DD HH:MM:SS` UTC) as one series named
/// after the file.
pub fn nab(path: &Path) -> anyhow::Result<Vec<Point>> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("nab");
    nab_as(path, &SeriesKey::new(name, "value")?)
}

/// A NAB-style file (`timestamp,value`) as the series `key`.
pub fn nab_as(path: &Path, key: &SeriesKey) -> anyhow::Result<Vec<Point>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let (stamp, value) = line
            .split_once(',')
            .with_context(|| format!("{}:{}: no comma", path.display(), n + 1))?;
        points.push(Point::new(key.clone(), parse_datetime_ns(stamp)?, value.trim().parse()?));
    }
    Ok(points)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) to nanoseconds since the epoch, through the ingest crate's
/// RFC 3339 parser (which accepts a space for the `T`).
fn parse_datetime_ns(text: &str) -> anyhow::Result<i64> {
    minitrue_ingest::parse_rfc3339(&format!("{}Z", text.trim()))
        .map_err(|e| anyhow::anyhow!("bad timestamp {text:?}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nab_timestamps_parse_as_utc() {
        assert_eq!(parse_datetime_ns("1970-01-01 00:00:01").unwrap(), 1_000_000_000);
        assert_eq!(
            parse_datetime_ns("2013-12-02 21:15:00").unwrap(),
            1_386_018_900 * 1_000_000_000
        );
        assert!(parse_datetime_ns("2013-12-02").is_err());
    }
}
