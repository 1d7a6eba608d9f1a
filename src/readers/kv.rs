//! `key=value` files: options.conf, user.conf, domain confs, *.list files.

/// One `key=value` line with its 1-based line number and byte span of the value.
#[derive(Debug, Clone, PartialEq)]
pub struct KvLine {
    pub key: String,
    pub value: String,
    pub line: u32,
    pub value_start: usize,
    pub value_end: usize,
}

/// Parses `key=value` lines. Tolerates CRLF, blank lines, `#` comments and
/// non-UTF-8 bytes (decoded lossily); lines without `=` are skipped.
pub fn parse(src: &[u8]) -> Vec<KvLine> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for (i, raw) in src.split(|&b| b == b'\n').enumerate() {
        let start = pos;
        pos += raw.len() + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = String::from_utf8_lossy(&line[..eq]).trim().to_string();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        let value = String::from_utf8_lossy(&line[eq + 1..]).to_string();
        out.push(KvLine {
            key,
            value,
            line: (i + 1) as u32,
            value_start: start + eq + 1,
            value_end: start + line.len(),
        });
    }
    out
}

/// The last value of `key` (DA keeps the last one when a key repeats).
pub fn get<'a>(lines: &'a [KvLine], key: &str) -> Option<&'a KvLine> {
    lines.iter().rev().find(|l| l.key == key)
}

/// One name per line (admin.list, users.list, domains.list).
pub fn list(src: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(src)
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_crlf_comments_and_spans() {
        let src = b"# c\r\nphp1_release=8.3\r\n\r\nbogus\nphp1_mode=php-fpm\nk=v=w\n";
        let l = parse(src);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].key, "php1_release");
        assert_eq!(l[0].value, "8.3");
        assert_eq!(l[0].line, 2);
        assert_eq!(&src[l[0].value_start..l[0].value_end], b"8.3");
        assert_eq!(l[2].value, "v=w");
        assert_eq!(get(&l, "php1_mode").unwrap().line, 5);
    }

    #[test]
    fn non_utf8_and_empty() {
        assert!(parse(b"").is_empty());
        let l = parse(b"a=\xff\xfe\n");
        assert_eq!(l[0].key, "a");
        assert_eq!(list(b"x.test\r\n\n y.test \n"), vec!["x.test", "y.test"]);
    }

    #[test]
    fn last_value_wins() {
        let l = parse(b"a=1\na=2\n");
        assert_eq!(get(&l, "a").unwrap().value, "2");
    }
}
