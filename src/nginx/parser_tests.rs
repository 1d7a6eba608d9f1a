//! Unit tests of the tokenizer and tree.

use super::*;

fn parse(s: &str) -> ParsedFile {
    parse_bytes(s.as_bytes())
}

/// Parses and checks the invariants every test relies on.
fn parse_bytes(b: &[u8]) -> ParsedFile {
    let f = ParsedFile::parse("/t.conf", b.to_vec());
    assert_eq!(f.print(), b, "round trip");
    f.walk(&mut |_, d| {
        assert!(f.text(d.span).starts_with(f.text(d.name.span)));
        assert_eq!(d.line, f.line_of(d.span.start));
    });
    f
}

/// (enclosing names joined by '/', name, arg values) for each directive.
fn flat(f: &ParsedFile) -> Vec<(String, String, Vec<String>)> {
    let mut v = Vec::new();
    f.walk(&mut |anc, d| {
        let path = anc
            .iter()
            .map(|a| a.name.value.as_str())
            .collect::<Vec<_>>()
            .join("/");
        v.push((
            path,
            d.name.value.clone(),
            d.args.iter().map(|a| a.value.clone()).collect(),
        ));
    });
    v
}

fn names(f: &ParsedFile) -> Vec<String> {
    flat(f).into_iter().map(|(_, n, _)| n).collect()
}

fn args_of(f: &ParsedFile, name: &str) -> Vec<String> {
    flat(f)
        .into_iter()
        .find(|(_, n, _)| n == name)
        .map(|(_, _, a)| a)
        .unwrap_or_default()
}

#[test]
fn simple_directives_and_block() {
    let f = parse("user nginx;\nhttp {\n  server { listen 80; }\n}\n");
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(
        flat(&f),
        vec![
            ("".into(), "user".into(), vec!["nginx".into()]),
            ("".into(), "http".into(), vec![]),
            ("http".into(), "server".into(), vec![]),
            ("http/server".into(), "listen".into(), vec!["80".into()]),
        ]
    );
}

#[test]
fn comments() {
    let f = parse("# top\nlisten 80; # trailing ; { }\nroot /a#b; # x\n#only");
    assert!(f.errors.is_empty());
    assert_eq!(names(&f), ["listen", "root"]);
    // `#` inside a word is a word character.
    assert_eq!(args_of(&f, "root"), ["/a#b"]);
    let f = parse("a b # c ;\n d;");
    assert_eq!(args_of(&f, "a"), ["b", "d"]);
}

#[test]
fn quoting_and_escapes() {
    let f = parse(r#"add_header X "a b;c{}" 'it\'s' "q\"x\\y" "t\tn\nr\r" "\d";"#);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(
        args_of(&f, "add_header"),
        ["X", "a b;c{}", "it's", "q\"x\\y", "t\tn\nr\r", "\\d"]
    );
    let d = f.directives().next().unwrap();
    assert!(d.args[1].quoted && !d.args[0].quoted);
    assert_eq!(f.text(d.args[1].span), br#""a b;c{}""#);
    // Outside quotes a backslash escapes the next char (even a space or `;`).
    let f = parse(r"set $a x\ y\;z;");
    assert_eq!(args_of(&f, "set"), ["$a", "x\\ y\\;z"]);
    // `if` conditions: `)` may follow a closing quote.
    let f = parse(r#"if ($a = "b") { return 403; }"#);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(args_of(&f, "if"), ["($a", "=", "b", ")"]);
    // Anything else right after a closing quote is an error, like nginx.
    let f = parse(r#"a "b"c;"#);
    assert_eq!(f.errors.len(), 1);
}

#[test]
fn variable_braces() {
    let f = parse("set $x ${host}_${uri};\nreturn 200 \"${x}\";\nlocation /a { root ${d}/w; }");
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(args_of(&f, "set"), ["$x", "${host}_${uri}"]);
    assert_eq!(args_of(&f, "root"), ["${d}/w"]);
    // A `{` not right after `$` still opens a block.
    let f = parse("location /x{ a; }");
    assert_eq!(args_of(&f, "location"), ["/x"]);
    assert_eq!(flat(&f)[1].0, "location");
}

#[test]
fn quoted_regex_location_with_braces() {
    let f = parse("location ~ \"^/(\\d{3})$\" {\n  return 404;\n}\n");
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(args_of(&f, "location"), ["~", "^/(\\d{3})$"]);
    assert_eq!(
        flat(&f)[1],
        ("location".into(), "return".into(), vec!["404".into()])
    );
    // Unquoted, the `{` opens a block as in nginx: errors, no panic.
    let f = parse("location ~ ^/(\\d{3})$ {\n  return 404;\n}\n");
    assert!(!f.errors.is_empty());
}

#[test]
fn unknown_blocks() {
    let f = parse("foo_bar a b {\n  baz { qux 1 2 3; }\n}\n");
    assert!(f.errors.is_empty());
    assert_eq!(
        flat(&f)[2],
        (
            "foo_bar/baz".into(),
            "qux".into(),
            vec!["1".into(), "2".into(), "3".into()]
        )
    );
}

#[test]
fn da_template_lines() {
    let src = "server {\n|*if SSL_TEMPLATE=\"1\"|\n  listen 443 ssl;\n|*elif X|\n|*else|\n  listen 80;\n\
               |*endif|\n|CUSTOM|\n  root /x;\n|?DOCROOT=`HOME`/domains/`DOMAIN`/public_html|\n\
               |CUSTOM2|\n}\n";
    let f = parse(src);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(names(&f), ["server", "listen", "listen", "root"]);
    assert_eq!(args_of(&f, "root"), ["/x"]);
    // Inside words `|…|` are plain characters.
    let f = parse("fastcgi_pass unix:/usr/local/php|PHP1_RELEASE|/sockets/|USER|.sock;\nserver_name |DOMAIN| www.|DOMAIN|;");
    assert!(f.errors.is_empty());
    assert_eq!(
        args_of(&f, "fastcgi_pass"),
        ["unix:/usr/local/php|PHP1_RELEASE|/sockets/|USER|.sock"]
    );
    assert_eq!(args_of(&f, "server_name"), ["|DOMAIN|", "www.|DOMAIN|"]);
}

#[test]
fn da_script_token_spans_lines() {
    let src = "|$/usr/local/bin/php\n<?php\nif ($a) { echo \"x;\"; }\n?>\nDONE|\nlisten 80;\n";
    let f = parse(src);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(names(&f), ["listen"]);
    assert_eq!(f.directives().next().unwrap().line, 6);
    match &f.nodes[0] {
        Node::Trivia(s) => assert!(f.text(*s).ends_with(b"DONE|\n")),
        n => panic!("{n:?}"),
    }
    // Unterminated script: trivia to the end, no panic.
    let f = parse("|$/bin/sh\necho {\n");
    assert!(f.directives().next().is_none());
}

#[test]
fn crlf_and_tabs() {
    let f = parse("http {\r\n\tserver {\r\n\t\tlisten\t80;\r\n\t}\r\n}\r\n");
    assert!(f.errors.is_empty());
    let v = flat(&f);
    assert_eq!(v[2].2, ["80"]);
    let mut lines = vec![];
    f.walk(&mut |_, d| lines.push(d.line));
    assert_eq!(lines, [1, 2, 3]);
    assert_eq!(f.line_text(3), "\t\tlisten\t80;");
}

#[test]
fn non_utf8_bytes() {
    let f = parse_bytes(b"root /srv/\xff\xfe;\n# \x80 comment\nindex a\xc3;\n");
    assert!(f.errors.is_empty());
    assert_eq!(args_of(&f, "root"), ["/srv/\u{fffd}\u{fffd}"]);
    assert_eq!(names(&f), ["root", "index"]);
}

#[test]
fn empty_and_no_final_newline() {
    let f = parse("");
    assert!(f.nodes.is_empty() && f.errors.is_empty());
    assert_eq!(f.line_of(0), 1);
    let f = parse("   \n\n");
    assert_eq!(f.nodes.len(), 1);
    let f = parse("a b;");
    assert_eq!(names(&f), ["a"]);
    assert_eq!(f.nodes.len(), 1);
}

#[test]
fn huge_file_parses_quickly() {
    let mut s = String::with_capacity(5_300_000);
    let mut i = 0;
    while s.len() < 5_000_000 {
        s.push_str(&format!(
            "server {{\n  server_name d{i}.test www.d{i}.test;\n  # c\n  location ~ \\.php$ {{ fastcgi_pass unix:/s/{i}.sock; }}\n}}\n"
        ));
        i += 1;
    }
    let t = std::time::Instant::now();
    let f = ParsedFile::parse("/big.conf", s.clone().into_bytes());
    let took = t.elapsed();
    assert!(f.errors.is_empty());
    assert_eq!(f.directives().count(), i);
    assert_eq!(f.print(), s.as_bytes());
    // Generous for a debug build on a shared machine.
    assert!(took.as_secs() < 10, "took {took:?}");
}

#[test]
fn unterminated_quote() {
    let f = parse("root \"/a;\nlisten 80;\n");
    assert_eq!(f.errors.len(), 1);
    assert!(f.errors[0].message.contains("end of file"));
    assert!(f.directives().next().is_none());
}

#[test]
fn missing_close_brace() {
    let f = parse("http {\n server {\n  listen 80;\n");
    assert_eq!(f.errors.len(), 1);
    assert!(f.errors[0].message.contains("expecting \"}\""));
    let http = f.directives().next().unwrap();
    let b = http.block.as_ref().unwrap();
    assert!(b.close.is_none());
    assert_eq!(http.span.end, f.src.len());
    assert_eq!(flat(&f)[2].1, "listen");
}

#[test]
fn stray_close_brace_and_semicolon() {
    let f = parse("a;\n}\nb;\n;\nc d }\ne;");
    let msgs: Vec<_> = f.errors.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(msgs[0], (2, "unexpected \"}\""));
    assert_eq!(msgs[1], (4, "unexpected \";\""));
    assert_eq!(msgs[2].0, 5);
    assert_eq!(names(&f), ["a", "b", "e"]);
}

#[test]
fn nameless_block_is_trivia() {
    let f = parse("{ a; }\nb;\nx { { c; } d; }");
    assert_eq!(f.errors.len(), 2);
    assert_eq!(names(&f), ["b", "x", "d"]);
}

#[test]
fn unterminated_statement_at_eof() {
    let f = parse("a;\nlisten 80");
    assert_eq!(f.errors.len(), 1);
    assert_eq!(f.errors[0].line, 2);
    assert_eq!(names(&f), ["a"]);
}

#[test]
fn deep_nesting_is_bounded() {
    let mut s = "a{".repeat(10_000);
    s.push_str(&"}".repeat(10_000));
    let f = parse(&s);
    let mut depth = 0;
    f.walk(&mut |anc, _| depth = depth.max(anc.len()));
    assert!(depth < MAX_DEPTH);
    assert!(!f.errors.is_empty());
}

#[test]
fn spans_and_lines() {
    let src = "user  nginx ;\n\nhttp {\n    server_name a.test\n        www.a.test;  # c\n    location / {\n    }\n}\n";
    let f = parse(src);
    let mut seen = vec![];
    f.walk(&mut |_, d| seen.push((d.line, f.text_lossy(d.span))));
    assert_eq!(
        seen,
        vec![
            (1, "user  nginx ;".to_string()),
            (3, src[src.find("http").unwrap()..src.len() - 1].to_string()),
            (4, "server_name a.test\n        www.a.test;".to_string()),
            (6, "location / {\n    }".to_string()),
        ]
    );
    let http = f.directives().nth(1).unwrap();
    let b = http.block.as_ref().unwrap();
    assert_eq!(f.text(b.open), b"{");
    assert_eq!(f.text(b.close.unwrap()), b"}");
    assert_eq!(f.line_of(b.close.unwrap().start), 8);
    let loc = http.children().nth(1).unwrap();
    assert_eq!(f.text(loc.args[0].span), b"/");
    assert_eq!(f.line_text(5), "        www.a.test;  # c");
}

#[test]
fn arbitrary_garbage_round_trips() {
    for s in [
        &b"\\"[..],
        b"\"",
        b"'\\",
        b"a\\",
        b"|",
        b"|$",
        b"|x",
        b"||",
        b"$",
        b"${",
        b"a ${ b {",
        b"}}}{{{",
        b"a \"b\"\"c\";",
        b"#",
        b"\r",
        b"a;\r",
    ] {
        parse_bytes(s);
    }
}

#[test]
fn pathological_inputs_stay_linear() {
    for unit in [
        &b"|a; "[..],
        b"{",
        b"}",
        b"\"",
        b"a ",
        b"${",
        b"|",
        b"|$",
        b"#",
        b"\\",
    ] {
        let src = unit.repeat(1_000_000 / unit.len());
        let t = std::time::Instant::now();
        let f = ParsedFile::parse("/p.conf", src.clone());
        assert!(t.elapsed().as_secs() < 5, "{:?} took {:?}", unit, t.elapsed());
        assert_eq!(f.print(), src);
    }
}

#[test]
fn splice_edits_by_span() {
    let f = parse("server {\n  fastcgi_pass unix:/a.sock;\n  listen 80;\n}\n");
    let mut edits = vec![];
    f.walk(&mut |_, d| match d.name.value.as_str() {
        "listen" => edits.push((d.args[0].span, b"8080".to_vec())),
        "fastcgi_pass" => edits.push((d.args[0].span, b"unix:/b.sock".to_vec())),
        _ => {}
    });
    let out = f.splice(&edits).unwrap();
    assert_eq!(
        out,
        b"server {\n  fastcgi_pass unix:/b.sock;\n  listen 8080;\n}\n"
    );
    assert!(f
        .splice(&[(Span::new(0, 5), vec![]), (Span::new(3, 6), vec![])])
        .is_err());
    assert!(f.splice(&[(Span::new(0, 999), vec![])]).is_err());
    assert_eq!(f.splice(&[]).unwrap(), f.src);
}
