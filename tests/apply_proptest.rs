//! Property: after an apply, every byte outside the edited spans is
//! identical, on generated config files (CRLF, tabs, comments, `|TOKEN|`
//! template text, non-UTF-8) with random non-overlapping span edits.

mod apply_support;

use apply_support::Tree;
use fpm_doctor::apply::{self, ApplyOptions, Edit, Outcome, Plan, Safety, Target};
use proptest::prelude::*;

const FILE: &str = "/usr/local/directadmin/data/users/u/domains/d.test.cust_nginx";

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\t".to_vec()),
        "[a-z ;{}|$]{0,12}".prop_map(|c| format!("# {c}\n").into_bytes()),
        "[A-Z0-9_]{1,8}".prop_map(|t| format!("|{t}|").into_bytes()),
        Just(b"|*if HAVE_PHP1_FPM=\"1\"|\r\n".to_vec()),
        Just(b"\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\r\n".to_vec()),
        Just(b"location ~ \\.php$ {\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// File bytes and edit specs (start, end, replacement), spans disjoint with
/// distinct starts (same-start edits are refused by design).
/// (start, end, replacement)
type Span = (usize, usize, Vec<u8>);

fn case() -> impl Strategy<Value = (Vec<u8>, Vec<Span>)> {
    prop::collection::vec(chunk(), 1..30)
        .prop_map(|c| c.concat())
        .prop_flat_map(|bytes| {
            let n = bytes.len();
            let spans = prop::collection::vec(
                (0..=n, 0..=8usize, prop::collection::vec(any::<u8>(), 0..10)),
                1..6,
            );
            (Just(bytes), spans)
        })
        .prop_map(|(bytes, raw)| {
            let n = bytes.len();
            let mut raw: Vec<Span> = raw
                .into_iter()
                .map(|(s, len, new)| (s, (s + len).min(n), new))
                .collect();
            raw.sort_by_key(|r| r.0);
            let mut out: Vec<Span> = Vec::new();
            for r in raw {
                match out.last() {
                    Some(p) if r.0 < p.1 || r.0 == p.0 => {}
                    _ => out.push(r),
                }
            }
            (bytes, out)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn bytes_outside_edited_spans_are_identical((bytes, spans) in case(), split in any::<bool>()) {
        let t = Tree::new("");
        t.write(FILE, &bytes);
        let mut edits: Vec<Edit> = spans
            .iter()
            .map(|(s, e, new)| Edit {
                file: FILE.into(),
                start: *s,
                end: *e,
                old: bytes[*s..*e].to_vec(),
                new: new.clone(),
            })
            .collect();
        edits.reverse(); // order in the plan must not matter
        let mk = |edits: Vec<Edit>| Plan {
            finding: "prop".into(),
            safety: Safety::Safe,
            edits,
            rewrite_users: vec!["u".into()],
            actions: vec![],
            target: Target::Nginx,
            advice: None,
        };
        let plans = if split && edits.len() > 1 {
            let rest = edits.split_off(1);
            vec![mk(edits), mk(rest)]
        } else {
            vec![mk(edits)]
        };
        let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
        prop_assert_eq!(rep.outcome, Outcome::Ok, "{:?}", rep);
        let out = t.read(FILE);
        // Walk the gaps between spans: each must be copied unchanged.
        let (mut pos_in, mut pos_out) = (0usize, 0usize);
        for (s, e, new) in &spans {
            let gap = &bytes[pos_in..*s];
            prop_assert_eq!(&out[pos_out..pos_out + gap.len()], gap);
            pos_out += gap.len();
            prop_assert_eq!(&out[pos_out..pos_out + new.len()], &new[..]);
            pos_out += new.len();
            pos_in = *e;
        }
        prop_assert_eq!(&out[pos_out..], &bytes[pos_in..]);
        // And undo gives the original back exactly.
        if bytes != out {
            let u = apply::undo(&t.cfg, &rep.repair_id, &ApplyOptions::default());
            prop_assert_eq!(u.outcome, Outcome::Ok);
            prop_assert_eq!(t.read(FILE), bytes);
        }
    }
}
