//! PHP-FPM configs: user pools (`data/users/<u>/php/php-fpmXY.conf`) and the
//! global `/usr/local/phpXY/etc/php-fpm.conf`. INI syntax: `[pool]`,
//! `key = value`, `;` comments.

use crate::model::Pool;

/// One parsed FPM config file: global keys and pools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FpmConf {
    pub global: Vec<(String, String)>,
    pub pools: Vec<Pool>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Parses an FPM config. `version_digits` is recorded on each pool ("83").
pub fn parse(file: &str, version_digits: &str, src: &[u8]) -> FpmConf {
    let text = String::from_utf8_lossy(src);
    let mut conf = FpmConf::default();
    let mut current: Option<Pool> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].trim().to_string();
            if let Some(p) = current.take() {
                conf.pools.push(p);
            }
            if name != "global" {
                current = Some(Pool {
                    name,
                    version_digits: version_digits.to_string(),
                    file: file.to_string(),
                    line: (i + 1) as u32,
                    listen: None,
                    listen_owner: None,
                    listen_group: None,
                    listen_mode: None,
                    settings: vec![],
                });
            }
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_string(), unquote(v));
        match current.as_mut() {
            Some(p) => match k.as_str() {
                "listen" => p.listen = Some(v),
                "listen.owner" => p.listen_owner = Some(v),
                "listen.group" => p.listen_group = Some(v),
                "listen.mode" => p.listen_mode = Some(v),
                _ => p.settings.push((k, v)),
            },
            None => conf.global.push((k, v)),
        }
    }
    if let Some(p) = current.take() {
        conf.pools.push(p);
    }
    conf
}

/// `php-fpm83.conf` -> `83`.
pub fn version_of_pool_file(name: &str) -> Option<String> {
    let digits = name.strip_prefix("php-fpm")?.strip_suffix(".conf")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_da_user_pool() {
        let src =
            b"[alice]\r\nuser = alice\nlisten = /usr/local/php83/sockets/alice.sock\nlisten.owner = alice\n\
listen.group = nginx\nlisten.mode = 660\n; comment\npm = ondemand\npm.max_children = 10\n";
        let c = parse("/x/php-fpm83.conf", "83", src);
        assert_eq!(c.pools.len(), 1);
        let p = &c.pools[0];
        assert_eq!(p.name, "alice");
        assert_eq!(p.listen.as_deref(), Some("/usr/local/php83/sockets/alice.sock"));
        assert_eq!(p.listen_mode.as_deref(), Some("660"));
        assert!(p.settings.contains(&("pm.max_children".into(), "10".into())));
        assert_eq!(p.line, 1);
    }

    #[test]
    fn global_section_and_several_pools() {
        let src = b"[global]\npid = /run/php-fpm83.pid\ninclude=/usr/local/directadmin/data/users/*/php/php-fpm83.conf\n[webapps]\nlisten = \"/usr/local/php83/sockets/webapps.sock\"\n[b]\n";
        let c = parse("f", "83", src);
        assert_eq!(c.global[0], ("pid".into(), "/run/php-fpm83.pid".into()));
        assert_eq!(c.pools.len(), 2);
        assert_eq!(
            c.pools[0].listen.as_deref(),
            Some("/usr/local/php83/sockets/webapps.sock")
        );
        assert_eq!(c.pools[1].listen, None);
    }

    #[test]
    fn malformed_input_does_not_panic() {
        let c = parse("f", "82", b"[\n=\n\xff\xff = 1\nlisten\n");
        assert!(c.pools.len() <= 1);
        assert_eq!(version_of_pool_file("php-fpm83.conf").as_deref(), Some("83"));
        assert_eq!(version_of_pool_file("php-fpm.conf"), None);
        assert_eq!(version_of_pool_file("php-fpmXY.conf"), None);
    }
}
