//! Reading logs the way an expert does: from the end backwards, only the
//! recent window, with a byte cap, following rotation (`.1`, `.2.gz`, …).

use crate::readers::Fs;
use serde::Serialize;
use std::io::{Read, Seek, SeekFrom};

/// What happened when a log source was read. A source that exists but cannot
/// be read is evidence of nothing: callers must report it as *unknown*.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SourceState {
    Ok {
        lines: usize,
    },
    Empty,
    Missing,
    Unreadable {
        reason: String,
    },
    /// Stopped at the byte cap before reaching the window's start.
    Capped {
        lines: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub file: String,
    #[serde(flatten)]
    pub state: SourceState,
}

/// One log line with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub file: String,
    /// Byte offset of the line in its (decompressed) file.
    pub offset: u64,
    pub text: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes read at most over all files of one log.
    pub max_bytes: u64,
    /// Unix time: lines older than this end the read.
    pub since: Option<i64>,
    /// How many rotated files to follow (`.1` … `.N`, plain or `.gz`).
    pub rotations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            since: None,
            rotations: 3,
        }
    }
}

const CHUNK: u64 = 64 * 1024;

/// Reads one plain file backwards; returns lines newest first and whether the
/// cap or the window stopped it.
fn read_back(
    file: &mut std::fs::File,
    name: &str,
    budget: &mut u64,
    since: Option<i64>,
    time_of: &dyn Fn(&str) -> Option<i64>,
    out: &mut Vec<LogLine>,
) -> std::io::Result<(bool, bool)> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 {
        if *budget == 0 {
            return Ok((true, false));
        }
        let step = CHUNK.min(pos).min(*budget);
        pos -= step;
        *budget -= step;
        file.seek(SeekFrom::Start(pos))?;
        let mut buf = vec![0u8; step as usize];
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&carry);
        // Everything after the first newline is complete lines; the head
        // carries over to the next (earlier) chunk unless we are at 0.
        let split = if pos == 0 {
            0
        } else {
            buf.iter()
                .position(|&b| b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(buf.len())
        };
        let (head, body) = buf.split_at(split);
        let mut lines: Vec<(u64, &[u8])> = Vec::new();
        let mut start = 0usize;
        for (i, &b) in body.iter().enumerate() {
            if b == b'\n' {
                lines.push((pos + split as u64 + start as u64, &body[start..i]));
                start = i + 1;
            }
        }
        if start < body.len() {
            lines.push((pos + split as u64 + start as u64, &body[start..]));
        }
        for (off, l) in lines.into_iter().rev() {
            let text = String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned();
            if text.is_empty() {
                continue;
            }
            if let (Some(s), Some(t)) = (since, time_of(&text)) {
                if t < s {
                    return Ok((false, true));
                }
            }
            out.push(LogLine {
                file: name.to_string(),
                offset: off,
                text,
            });
        }
        carry = head.to_vec();
    }
    Ok((false, false))
}

/// A gzip-rotated file: decompressed (up to the remaining budget), then
/// filtered like a plain one.
fn read_gz(
    file: std::fs::File,
    name: &str,
    budget: &mut u64,
    since: Option<i64>,
    time_of: &dyn Fn(&str) -> Option<i64>,
    out: &mut Vec<LogLine>,
) -> std::io::Result<(bool, bool)> {
    let mut data = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(file).take(*budget + 1);
    dec.read_to_end(&mut data)?;
    let capped = data.len() as u64 > *budget;
    data.truncate(*budget as usize);
    *budget -= data.len() as u64;
    let mut lines: Vec<LogLine> = Vec::new();
    let mut off = 0u64;
    for l in data.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(l).into_owned();
        if !text.is_empty() {
            lines.push(LogLine {
                file: name.to_string(),
                offset: off,
                text,
            });
        }
        off += l.len() as u64 + 1;
    }
    let mut reached = false;
    for l in lines.into_iter().rev() {
        if let (Some(s), Some(t)) = (since, time_of(&l.text)) {
            if t < s {
                reached = true;
                break;
            }
        }
        out.push(l);
    }
    Ok((capped, reached))
}

/// Reads the recent part of a log and its rotations. Returns lines oldest
/// first, and the state of every file looked at.
pub fn read_recent(
    fs: &Fs,
    path: &str,
    limits: Limits,
    time_of: &dyn Fn(&str) -> Option<i64>,
) -> (Vec<LogLine>, Vec<Source>) {
    let mut out = Vec::new();
    let mut sources = Vec::new();
    let mut budget = limits.max_bytes;
    let mut candidates = vec![path.to_string()];
    for i in 1..=limits.rotations {
        candidates.push(format!("{path}.{i}"));
        candidates.push(format!("{path}.{i}.gz"));
    }
    for (n, name) in candidates.iter().enumerate() {
        let before = out.len();
        let file = match fs.open(name, false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if n == 0 {
                    sources.push(Source {
                        file: name.clone(),
                        state: SourceState::Missing,
                    });
                }
                continue;
            }
            Err(e) => {
                sources.push(Source {
                    file: name.clone(),
                    state: SourceState::Unreadable {
                        reason: e.to_string(),
                    },
                });
                continue;
            }
        };
        let res = if name.ends_with(".gz") {
            read_gz(file, name, &mut budget, limits.since, time_of, &mut out)
        } else {
            let mut f = file;
            read_back(&mut f, name, &mut budget, limits.since, time_of, &mut out)
        };
        let got = out.len() - before;
        match res {
            Ok((capped, reached)) => {
                let state = if capped {
                    SourceState::Capped { lines: got }
                } else if got == 0 && !reached {
                    SourceState::Empty
                } else {
                    SourceState::Ok { lines: got }
                };
                sources.push(Source {
                    file: name.clone(),
                    state,
                });
                if capped || reached {
                    break;
                }
            }
            Err(e) => sources.push(Source {
                file: name.clone(),
                state: SourceState::Unreadable {
                    reason: e.to_string(),
                },
            }),
        }
    }
    out.reverse();
    (out, sources)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Unix time of a civil date-time (no time zone applied).
pub fn unix_of(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    days_from_civil(y, mo, d) * 86400 + (h * 3600 + mi * 60 + s) as i64
}

pub fn month_number(name: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    M.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

/// Formats unix time as `2026-11-24 20:10:44` (UTC).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Write;

    fn t(line: &str) -> Option<i64> {
        line.split_whitespace().next()?.parse().ok()
    }

    fn setup(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Config) {
        let d = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let p = d.path().join(name.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let cfg = Config::load(None, Some(d.path())).unwrap();
        (d, cfg)
    }

    fn gz(s: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_window_across_rotations_oldest_first() {
        let rot2 = gz("100 a\n110 b\n");
        let (_d, cfg) = setup(&[
            ("/l.log", b"300 e\r\n310 f\n"),
            ("/l.log.1", b"200 c\n210 d\n"),
            ("/l.log.2.gz", &rot2),
        ]);
        let fs = Fs::new(&cfg);
        let lim = Limits {
            since: Some(105),
            ..Limits::default()
        };
        let (lines, sources) = read_recent(&fs, "/l.log", lim, &t);
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["110 b", "200 c", "210 d", "300 e", "310 f"]);
        assert_eq!(sources.len(), 3);
        assert_eq!(lines[3].offset, 0);
        assert_eq!(lines[4].offset, 7);
    }

    #[test]
    fn byte_cap_and_missing_and_empty() {
        let big: String = (0..10_000).map(|i| format!("{i} line\n")).collect();
        let (_d, cfg) = setup(&[("/big.log", big.as_bytes()), ("/empty.log", b"")]);
        let fs = Fs::new(&cfg);
        let (lines, s) = read_recent(
            &fs,
            "/big.log",
            Limits {
                max_bytes: 1000,
                since: None,
                rotations: 0,
            },
            &t,
        );
        assert!(matches!(s[0].state, SourceState::Capped { .. }));
        assert_eq!(lines.last().unwrap().text, "9999 line");
        assert!(lines.len() < 200);
        let (_, s) = read_recent(&fs, "/nope.log", Limits::default(), &t);
        assert_eq!(s[0].state, SourceState::Missing);
        let (_, s) = read_recent(&fs, "/empty.log", Limits::default(), &t);
        assert_eq!(s[0].state, SourceState::Empty);
    }

    #[test]
    fn long_lines_across_chunks_stay_whole() {
        let long = "x".repeat(200_000);
        let content = format!("1 first\n2 {long}\n3 last\n");
        let (_d, cfg) = setup(&[("/l.log", content.as_bytes())]);
        let (lines, _) = read_recent(&Fs::new(&cfg), "/l.log", Limits::default(), &t);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].text.len(), 200_002);
        assert_eq!(&content[lines[2].offset as usize..], "3 last\n");
    }

    #[test]
    fn civil_time_round_trips() {
        let u = unix_of(2026, 11, 24, 20, 10, 44);
        assert_eq!(format_time(u), "2026-11-24 20:10:44");
        assert_eq!(unix_of(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(format_time(951782400), "2000-02-29 00:00:00");
    }
}
