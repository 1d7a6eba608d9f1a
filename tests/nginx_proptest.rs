//! Property tests: the parser is lossless on any input, and on generated
//! nginx-like configs it finds exactly the directives that were generated.

use fpm_doctor::nginx::{Node, ParsedFile};
use proptest::prelude::*;

/// A generated config node, rendered to text by `render`.
#[derive(Debug, Clone)]
enum G {
    /// name, (separator before, raw word, expected value) per arg, separator before terminator
    Dir(
        String,
        Vec<(String, String, String)>,
        String,
        Option<Vec<(String, G)>>,
    ),
    Trivia(String),
}

fn sep() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("\r\n".to_string()),
        Just("\n  ".to_string()),
        "[a-z ;{}\"'|$]{0,10}".prop_map(|c| format!(" #{c}\n")),
        "[a-z ;{}\"'|]{0,10}".prop_map(|c| format!(" #{c}\r\n\t")),
    ]
}

fn opt_sep() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), sep()]
}

/// (raw, expected value)
fn word() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[a-zA-Z0-9_/.:~^*=-]{1,10}".prop_map(|s| (s.clone(), s)),
        "[a-z]{0,4}\\$\\{[a-z]{1,5}\\}[a-z]{0,3}".prop_map(|s| (s.clone(), s)),
        "[a-z]{1,4}\\|[A-Z0-9_]{1,6}\\|[a-z.]{0,4}".prop_map(|s| (s.clone(), s)),
        "[a-z]{1,3}\\\\[a-mo-qsu-z.][a-z]{0,2}".prop_map(|s| (s.clone(), s)),
        "[a-z {};#'|\\\\\"$\r\n]{0,12}".prop_map(|v| {
            let raw = format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
            (raw, v)
        }),
        "[a-z {};#\"|$]{0,12}".prop_map(|v| (format!("'{v}'"), v)),
    ]
}

fn args() -> impl Strategy<Value = Vec<(String, String, String)>> {
    prop::collection::vec((sep(), word()).prop_map(|(s, (r, v))| (s, r, v)), 0..4)
}

fn trivia() -> impl Strategy<Value = G> {
    prop_oneof![
        sep(),
        Just("|*if SSL_TEMPLATE=\"1\"|\n".to_string()),
        Just("|*else|\r\n".to_string()),
        Just("|*endif|\n".to_string()),
        Just("|CUSTOM|\n".to_string()),
        Just("|?DOCROOT=`HOME`/domains/`DOMAIN`/public_html|\n".to_string()),
        Just("|$/usr/local/bin/php\n<?php echo '{;}'; ?>\nDONE|\n".to_string()),
    ]
    .prop_map(G::Trivia)
}

fn node() -> impl Strategy<Value = G> {
    let name = "[a-z_]{1,10}";
    let leaf = prop_oneof![
        (name, args(), opt_sep()).prop_map(|(n, a, s)| G::Dir(n, a, s, None)),
        trivia(),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        (
            name,
            args(),
            opt_sep(),
            prop::collection::vec((opt_sep(), inner), 0..6),
        )
            .prop_map(|(n, a, s, kids)| G::Dir(n, a, s, Some(kids)))
    })
}

/// Renders nodes and collects (depth, name, arg values) of each directive in walk order.
fn render(
    nodes: &[(String, G)],
    depth: usize,
    out: &mut String,
    exp: &mut Vec<(usize, String, Vec<String>)>,
) {
    for (lead, n) in nodes {
        out.push_str(lead);
        match n {
            G::Trivia(t) => {
                // Template lines only count at a statement start on their own line.
                if t.starts_with('|') && !(out.is_empty() || out.ends_with(['\n', ' ', '\t'])) {
                    out.push('\n');
                }
                out.push_str(t)
            }
            G::Dir(name, args, before_term, block) => {
                out.push_str(name);
                for (s, raw, _) in args {
                    out.push_str(s);
                    out.push_str(raw);
                }
                out.push_str(before_term);
                exp.push((depth, name.clone(), args.iter().map(|a| a.2.clone()).collect()));
                match block {
                    None => out.push(';'),
                    Some(kids) => {
                        out.push('{');
                        render(kids, depth + 1, out, exp);
                        out.push('}');
                    }
                }
            }
        }
    }
}

fn check_lossless(f: &ParsedFile) {
    assert_eq!(f.print(), f.src);
    // Top-level nodes tile the file.
    let mut at = 0;
    for n in &f.nodes {
        assert_eq!(n.span().start, at);
        at = n.span().end;
        if let Node::Trivia(s) = n {
            assert!(!s.is_empty());
        }
    }
    assert_eq!(at, f.src.len());
    // Each directive's span starts with its raw name (the value may differ by escapes).
    f.walk(&mut |_, d| {
        assert_eq!(d.span.start, d.name.span.start);
        assert!(f.text(d.span).starts_with(f.text(d.name.span)));
        assert_eq!(d.line, f.line_of(d.span.start));
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn generated_configs_round_trip(nodes in prop::collection::vec((opt_sep(), node()), 0..8)) {
        let mut text = String::new();
        let mut exp = Vec::new();
        render(&nodes, 0, &mut text, &mut exp);
        let f = ParsedFile::parse("/gen.conf", text.clone().into_bytes());
        check_lossless(&f);
        prop_assert!(f.errors.is_empty(), "errors {:?} in {:?}", f.errors, text);
        let mut got = Vec::new();
        f.walk(&mut |anc, d| {
            got.push((anc.len(), d.name.value.clone(), d.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>()));
            assert!(f.text(d.span).starts_with(d.name.value.as_bytes()));
        });
        prop_assert_eq!(got, exp, "in {:?}", text);
    }

    #[test]
    fn arbitrary_bytes_round_trip(src in prop::collection::vec(any::<u8>(), 0..512)) {
        check_lossless(&ParsedFile::parse("/any.conf", src));
    }

    /// Bytes from nginx's special characters, to reach error paths often.
    #[test]
    fn syntax_soup_round_trips(src in prop::collection::vec(
        prop::sample::select(b"{};\"'\\#|$ \t\r\nabDONE|*?".to_vec()), 0..400)) {
        check_lossless(&ParsedFile::parse("/soup.conf", src));
    }
}
