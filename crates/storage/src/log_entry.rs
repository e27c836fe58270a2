//! What the storage engine writes into each WAL record, and how it reads it back.
//!
//! Format (version 1, all integers little-endian, `varint` = unsigned LEB128):
//! ```text
//! u8 format version (1) | u8 entry kind
//! kind 1, Write:  varint series_count, then per series:
//!                   str device_id | str metric | varint point_count | point_count × (i64 time_ns, u64 value bits)
//! kind 2, Delete: str device_id | u8 has_metric | [str metric] | i64 start_ns | i64 end_ns
//! str = varint byte length + UTF-8 bytes
//! ```
//! Points of one series keep their arrival order, so "last write wins" inside one batch
//! survives replay. The WAL's crc already guards the bytes; decoding still validates every
//! length so a bug or a bad disk never turns into a panic or a huge allocation.

use minitrue_common::{Point, SeriesKey, TimeRange};

use crate::error::{Result, StorageError};

const FORMAT_VERSION: u8 = 1;
const KIND_WRITE: u8 = 1;
const KIND_DELETE: u8 = 2;

/// A delete of one device's series (all metrics when `metric` is `None`) within a time range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeleteRequest {
    pub device_id: String,
    pub metric: Option<String>,
    pub time: TimeRange,
}

impl DeleteRequest {
    /// True when this delete covers `(series, time)`.
    pub fn matches(&self, series: &SeriesKey, time: i64) -> bool {
        self.matches_series(series) && self.time.contains(time)
    }

    pub fn matches_series(&self, series: &SeriesKey) -> bool {
        series.device_id() == self.device_id
            && self.metric.as_deref().is_none_or(|metric| metric == series.metric())
    }
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// Points grouped by series, each group in arrival order.
    Write(SeriesGroups),
    Delete(DeleteRequest),
}

/// A batch of points grouped by series, each group in arrival order.
pub type SeriesGroups = Vec<(SeriesKey, Vec<(i64, f64)>)>;

/// Encodes a write of `groups` (see [`group_by_series`]).
pub fn encode_write(groups: &[(SeriesKey, Vec<(i64, f64)>)]) -> Vec<u8> {
    let points: usize = groups.iter().map(|(_, samples)| samples.len()).sum();
    let mut out = Vec::with_capacity(16 + points * 17);
    out.push(FORMAT_VERSION);
    out.push(KIND_WRITE);
    put_varint(&mut out, groups.len() as u64);
    for (series, samples) in groups {
        put_str(&mut out, series.device_id());
        put_str(&mut out, series.metric());
        put_varint(&mut out, samples.len() as u64);
        for &(time, value) in samples {
            out.extend_from_slice(&time.to_le_bytes());
            out.extend_from_slice(&value.to_bits().to_le_bytes());
        }
    }
    out
}

/// Groups points by series in first-seen order, each group in arrival order.
pub fn group_by_series(points: &[Point]) -> SeriesGroups {
    let mut index: std::collections::HashMap<&SeriesKey, usize> = Default::default();
    let mut groups: Vec<(SeriesKey, Vec<(i64, f64)>)> = Vec::new();
    for point in points {
        let slot = *index.entry(&point.series).or_insert_with(|| {
            groups.push((point.series.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push((point.time, point.value));
    }
    groups
}

pub fn encode_delete(delete: &DeleteRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_VERSION);
    out.push(KIND_DELETE);
    put_str(&mut out, &delete.device_id);
    match &delete.metric {
        Some(metric) => {
            out.push(1);
            put_str(&mut out, metric);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&delete.time.start.to_le_bytes());
    out.extend_from_slice(&delete.time.end.to_le_bytes());
    out
}

pub fn decode(lsn: u64, bytes: &[u8]) -> Result<LogEntry> {
    let mut reader = Reader { bytes, pos: 0, lsn };
    let version = reader.u8()?;
    if version != FORMAT_VERSION {
        return Err(reader.corrupt(format!("unknown entry format version {version}")));
    }
    let entry = match reader.u8()? {
        KIND_WRITE => {
            let series_count = reader.bounded_count(2 + 2 + 1)?;
            let mut groups = Vec::with_capacity(series_count);
            for _ in 0..series_count {
                let device = reader.str()?;
                let metric = reader.str()?;
                let series = SeriesKey::new(device, metric)
                    .map_err(|e| reader.corrupt(format!("bad series key: {e}")))?;
                let count = reader.bounded_count(16)?;
                let mut samples = Vec::with_capacity(count);
                for _ in 0..count {
                    let time = i64::from_le_bytes(reader.array()?);
                    let value = f64::from_bits(u64::from_le_bytes(reader.array()?));
                    samples.push((time, value));
                }
                groups.push((series, samples));
            }
            LogEntry::Write(groups)
        }
        KIND_DELETE => {
            let device_id = reader.str()?.to_string();
            let metric = match reader.u8()? {
                0 => None,
                1 => Some(reader.str()?.to_string()),
                flag => return Err(reader.corrupt(format!("bad metric flag {flag}"))),
            };
            let start = i64::from_le_bytes(reader.array()?);
            let end = i64::from_le_bytes(reader.array()?);
            LogEntry::Delete(DeleteRequest { device_id, metric, time: TimeRange::new(start, end) })
        }
        kind => return Err(reader.corrupt(format!("unknown entry kind {kind}"))),
    };
    if reader.pos != bytes.len() {
        return Err(reader.corrupt(format!("{} trailing bytes", bytes.len() - reader.pos)));
    }
    Ok(entry)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    lsn: u64,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::CorruptWalRecord {
            lsn: self.lsn,
            reason: format!("{reason} at byte {}", self.pos),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.corrupt(format!("needs {n} bytes, {} left", self.remaining())));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("varint longer than 64 bits".to_string()))
    }

    /// A count of items that each need at least `min_item_bytes`: refused when the bytes left
    /// cannot hold that many, so a corrupt count never drives a huge allocation.
    fn bounded_count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let count = self.varint()?;
        let most = self.remaining() / min_item_bytes;
        if count > most as u64 {
            return Err(
                self.corrupt(format!("count {count} exceeds what {} bytes hold", self.remaining()))
            );
        }
        Ok(count as usize)
    }

    fn str(&mut self) -> Result<&'a str> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(self.corrupt(format!("string of {len} bytes, {} left", self.remaining())));
        }
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt("string is not utf-8".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(d: &str, m: &str) -> SeriesKey {
        SeriesKey::new(d, m).unwrap()
    }

    #[test]
    fn write_entry_bytes_are_stable() {
        // Snapshot of format version 1: a change here needs a fixture of the old format.
        let points = vec![Point::new(key("d", "t"), 1, 2.5)];
        let bytes = encode_write(&group_by_series(&points));
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "010101016401740101000000000000000000000000000440");
    }

    #[test]
    fn delete_entry_bytes_are_stable() {
        let delete =
            DeleteRequest { device_id: "d".into(), metric: None, time: TimeRange::new(-1, 7) };
        let hex: String = encode_delete(&delete).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "01020164 00ffffffffffffffff0700000000000000".replace(' ', ""));
    }

    #[test]
    fn grouping_keeps_arrival_order_per_series() {
        let points = vec![
            Point::new(key("a", "t"), 5, 1.0),
            Point::new(key("b", "t"), 1, 2.0),
            Point::new(key("a", "t"), 5, 3.0),
        ];
        let entry = decode(1, &encode_write(&group_by_series(&points))).unwrap();
        let LogEntry::Write(groups) = entry else { panic!("not a write") };
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec![(5, 1.0), (5, 3.0)]);
    }

    proptest! {
        #[test]
        fn writes_round_trip(raw in proptest::collection::vec((0u8..4, any::<i64>(), any::<u64>()), 0..50)) {
            let points: Vec<Point> = raw.iter()
                .map(|&(d, t, v)| Point::new(key(&format!("dev{d}"), "m"), t, f64::from_bits(v)))
                .collect();
            let LogEntry::Write(groups) = decode(9, &encode_write(&group_by_series(&points))).unwrap() else {
                panic!("not a write")
            };
            let mut flattened: Vec<(String, i64, u64)> = groups.iter()
                .flat_map(|(k, s)| s.iter().map(move |&(t, v)| (k.to_string(), t, v.to_bits())))
                .collect();
            let mut expected: Vec<(String, i64, u64)> = points.iter()
                .map(|p| (p.series.to_string(), p.time, p.value.to_bits())).collect();
            flattened.sort();
            expected.sort();
            prop_assert_eq!(flattened, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(1, &bytes);
        }

        #[test]
        fn truncated_entries_are_errors(cut in 0usize..47) {
            let points = vec![Point::new(key("dev", "m"), 1, 1.0), Point::new(key("dev", "m"), 2, 2.0)];
            let bytes = encode_write(&group_by_series(&points));
            prop_assume!(cut < bytes.len());
            prop_assert!(decode(1, &bytes[..cut]).is_err());
        }
    }
}
