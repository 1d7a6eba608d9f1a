//! Include loader: resolution, globbing, problems, cache, parents.

use fpm_doctor::nginx::{Expanded, Loader, MemSource, ProblemKind, RootSource, Source};
use std::io;

fn names(e: &Expanded) -> Vec<String> {
    e.items.iter().map(|i| i.name.clone()).collect()
}

fn first(e: &Expanded, name: &str) -> usize {
    e.named(name)
        .next()
        .unwrap_or_else(|| panic!("no {name} in {:?}", names(e)))
}

fn expand(src: &MemSource) -> Expanded {
    Loader::new(src, "/etc/nginx").expand("/etc/nginx/nginx.conf")
}

#[test]
fn relative_include_resolves_against_conf_prefix() {
    let src = MemSource::new()
        .with("/etc/nginx/nginx.conf", "http { include conf.d/site.conf; }")
        .with("/etc/nginx/conf.d/site.conf", "include snippets/x.conf;")
        .with("/etc/nginx/snippets/x.conf", "right 1;")
        .with("/etc/nginx/conf.d/snippets/x.conf", "wrong 1;");
    let e = expand(&src);
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    assert_eq!(names(&e), ["http", "include", "include", "right"]);
    let right = first(&e, "right");
    assert_eq!(e.path_of(right), "/etc/nginx/snippets/x.conf");
    assert_eq!(e.include_chain(right).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(e.ancestors(right).collect::<Vec<_>>(), [0]);
    assert_eq!(e.files.len(), 3);
}

#[test]
fn glob_include_is_sorted_and_skips_dotfiles() {
    let src = MemSource::new()
        .with("/etc/nginx/nginx.conf", "include /etc/nginx/conf.d/*.conf;")
        .with("/etc/nginx/conf.d/b.conf", "b;")
        .with("/etc/nginx/conf.d/a.conf", "a;")
        .with("/etc/nginx/conf.d/c.conf", "c;")
        .with("/etc/nginx/conf.d/.hidden.conf", "hidden;")
        .with("/etc/nginx/conf.d/sub/d.conf", "d;")
        .with("/etc/nginx/conf.d/x.txt", "x;");
    let e = expand(&src);
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    assert_eq!(names(&e), ["include", "a", "b", "c"]);
    assert!(e.items[1..]
        .iter()
        .all(|i| i.via_include == Some(0) && i.parent.is_none()));
}

/// A source whose glob answers in reverse order: the loader sorts anyway.
struct Reversed(MemSource);
impl Source for Reversed {
    fn read(&self, p: &str) -> io::Result<Vec<u8>> {
        self.0.read(p)
    }
    fn glob(&self, p: &str) -> io::Result<Vec<String>> {
        let mut v = self.0.glob(p)?;
        v.reverse();
        Ok(v)
    }
}

#[test]
fn glob_results_are_sorted_by_the_loader() {
    let src = Reversed(
        MemSource::new()
            .with("/etc/nginx/nginx.conf", "include conf.d/*;")
            .with("/etc/nginx/conf.d/1", "one;")
            .with("/etc/nginx/conf.d/2", "two;"),
    );
    let e = Loader::new(&src, "/etc/nginx").expand("/etc/nginx/nginx.conf");
    assert_eq!(names(&e), ["include", "one", "two"]);
}

#[test]
fn glob_without_match_is_fine() {
    let src = MemSource::new().with(
        "/etc/nginx/nginx.conf",
        "http { include /nowhere/*.conf; include conf.d/*.conf; ok; }",
    );
    let e = expand(&src);
    assert!(e.problems.is_empty(), "{:?}", e.problems);
    assert_eq!(names(&e), ["http", "include", "include", "ok"]);
}

#[test]
fn missing_file_is_unreadable() {
    let src = MemSource::new().with(
        "/etc/nginx/nginx.conf",
        "http {\n    include /etc/nginx/missing.conf;\n    ok;\n}\n",
    );
    let e = expand(&src);
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!(p.kind, ProblemKind::Unreadable);
    assert_eq!((p.file.as_str(), p.line), ("/etc/nginx/nginx.conf", 2));
    assert_eq!(p.text, "    include /etc/nginx/missing.conf;");
    assert!(p.message.contains("/etc/nginx/missing.conf"), "{}", p.message);
    assert_eq!(names(&e), ["http", "include", "ok"]);

    let e = Loader::new(&src, "/etc/nginx").expand("/etc/nginx/absent.conf");
    assert_eq!(e.problems[0].kind, ProblemKind::Unreadable);
    assert!(e.items.is_empty() && e.files.is_empty());
}

#[test]
fn include_cycles_are_reported_and_stop() {
    let src = MemSource::new()
        .with("/etc/nginx/nginx.conf", "include a.conf;\nend;")
        .with("/etc/nginx/a.conf", "in_a;\ninclude b.conf;")
        .with("/etc/nginx/b.conf", "in_b;\ninclude /etc/nginx//a.conf;");
    let e = expand(&src);
    assert_eq!(
        names(&e),
        ["include", "in_a", "include", "in_b", "include", "end"]
    );
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!(p.kind, ProblemKind::IncludeCycle);
    assert_eq!((p.file.as_str(), p.line), ("/etc/nginx/b.conf", 2));
    assert!(
        p.message
            .contains("/etc/nginx/a.conf -> /etc/nginx/b.conf -> /etc/nginx/a.conf"),
        "{}",
        p.message
    );

    let src = MemSource::new().with("/etc/nginx/nginx.conf", "x;\ninclude /etc/nginx/nginx.conf;\ny;");
    let e = expand(&src);
    assert_eq!(names(&e), ["x", "include", "y"]);
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].kind, ProblemKind::IncludeCycle);

    // A glob that matches the including file itself.
    let src = MemSource::new()
        .with("/etc/nginx/nginx.conf", "include conf.d/*.conf;")
        .with("/etc/nginx/conf.d/a.conf", "include conf.d/*.conf; a;");
    let e = expand(&src);
    assert_eq!(names(&e), ["include", "include", "a"]);
    assert_eq!(e.problems.len(), 1);
}

#[test]
fn files_are_parsed_once() {
    let mut main = String::from("http {\n");
    for _ in 0..10_000 {
        main.push_str("  include /etc/nginx/common.conf;\n");
    }
    main.push_str("}\n");
    let src = MemSource::new()
        .with("/etc/nginx/nginx.conf", main)
        .with("/etc/nginx/common.conf", "a 1;\nbroken \"x;\n")
        .with(
            "/etc/nginx/other.conf",
            "include missing.conf;\ninclude missing.conf;",
        );
    let mut loader = Loader::new(&src, "/etc/nginx");
    let e = loader.expand("/etc/nginx/nginx.conf");
    assert_eq!(src.reads_of("/etc/nginx/common.conf"), 1);
    assert_eq!(src.reads_of("/etc/nginx/nginx.conf"), 1);
    assert_eq!(e.files.len(), 2);
    assert_eq!(e.items.len(), 1 + 10_000 * 2);
    // Parse errors are reported once per file, not once per inclusion.
    let parse: Vec<_> = e
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Parse)
        .collect();
    assert_eq!(parse.len(), 1);
    assert_eq!(
        (parse[0].file.as_str(), parse[0].line),
        ("/etc/nginx/common.conf", 2)
    );
    assert_eq!(parse[0].text, "broken \"x;");

    // The cache survives across expansions, failures included.
    let e2 = loader.expand("/etc/nginx/other.conf");
    assert_eq!(e2.problems.len(), 2);
    assert_eq!(src.reads_of("/etc/nginx/missing.conf"), 1);
    loader.expand("/etc/nginx/nginx.conf");
    assert_eq!(src.reads(), 4);
}

#[test]
fn parent_crosses_include_boundaries() {
    let src = MemSource::new()
        .with(
            "/etc/nginx/nginx.conf",
            "http {\n  server {\n    listen 80;\n    include /usr/local/directadmin/data/users/alice/nginx_php.conf;\n  }\n}\n",
        )
        .with(
            "/usr/local/directadmin/data/users/alice/nginx_php.conf",
            "location ~ \\.php$ {\n  if (-f $request_filename) {\n    fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;\n  }\n}\n",
        );
    let e = expand(&src);
    assert!(e.problems.is_empty());
    let server = first(&e, "server");
    let include = first(&e, "include");
    let location = first(&e, "location");
    let pass = first(&e, "fastcgi_pass");
    assert_eq!(e.items[location].parent, Some(server));
    assert_eq!(e.items[location].via_include, Some(include));
    assert_eq!(e.items[pass].via_include, Some(include));
    let anc: Vec<_> = e.ancestors(pass).map(|i| e.items[i].name.as_str()).collect();
    assert_eq!(anc, ["if", "location", "server", "http"]);
    assert_eq!(
        e.item_text(pass),
        "fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"
    );
    assert_eq!(
        e.path_of(pass),
        "/usr/local/directadmin/data/users/alice/nginx_php.conf"
    );
    assert_eq!(
        (e.items[pass].line, e.line_text(pass).trim()),
        (3, e.item_text(pass).as_str())
    );
    let it = &e.items[pass];
    assert_eq!(
        e.files[it.file].text(it.arg_spans[0]),
        b"unix:/usr/local/php82/sockets/alice.sock"
    );
    assert!(e.items[location].has_block && !it.has_block);
    let kids: Vec<_> = e.children(server).map(|i| e.items[i].name.as_str()).collect();
    assert_eq!(kids, ["listen", "include", "location"]);
}

#[test]
fn include_with_wrong_arity_is_a_parse_problem() {
    let src = MemSource::new().with("/etc/nginx/nginx.conf", "include a b;\ninclude;");
    let e = expand(&src);
    assert_eq!(e.problems.len(), 2);
    assert!(e.problems.iter().all(|p| p.kind == ProblemKind::Parse));
}

/// The DirectAdmin layout on disk, read through `RootSource`.
#[test]
fn real_directory_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let put = |p: &str, content: &[u8]| {
        let host = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, content).unwrap();
    };
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nginx/alice.nginx.conf"
    ))
    .unwrap();
    put(
        "/etc/nginx/nginx.conf",
        b"user nginx;\nhttp {\n  include mime.types;\n  include /etc/nginx/nginx-vhosts.conf;\n  include /usr/local/directadmin/data/users/*/nginx.conf;\n}\n",
    );
    put("/etc/nginx/mime.types", b"types { text/html html; }\n");
    put(
        "/etc/nginx/nginx-vhosts.conf",
        b"server { listen 80 default_server; }\n",
    );
    put("/usr/local/directadmin/data/users/alice/nginx.conf", &fixture);
    put(
        "/usr/local/directadmin/data/users/bob/nginx.conf",
        b"server { server_name b.test; }\n",
    );
    put(
        "/usr/local/directadmin/data/users/.skel/nginx.conf",
        b"server { server_name hidden; }\n",
    );
    put(
        "/usr/local/directadmin/data/users/alice/nginx_php.conf",
        b"# empty\n",
    );
    put(
        "/etc/nginx/webapps.conf",
        b"location /phpmyadmin { return 404; }\n",
    );
    // webapps.ssl.conf, fastcgi_params and nginx_limits.conf are missing on purpose.

    let src = RootSource::new(root);
    let e = Loader::new(&src, "/etc/nginx/").expand("/etc/nginx/nginx.conf");
    let unreadable: Vec<_> = e
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unreadable)
        .map(|p| p.message.clone())
        .collect();
    assert_eq!(e.problems.len(), unreadable.len(), "{:?}", e.problems);
    assert!(unreadable
        .iter()
        .any(|m| m.contains("/etc/nginx/webapps.ssl.conf")));
    // fastcgi_params is missing; each of the two include sites gets its own problem.
    assert_eq!(
        unreadable.iter().filter(|m| m.contains("fastcgi_params")).count(),
        2
    );

    let server_names: Vec<_> = e
        .named("server_name")
        .map(|i| e.items[i].args.join(" "))
        .collect();
    assert_eq!(server_names, ["a.test www.a.test", "a.test www.a.test", "b.test"]);
    let pass = first(&e, "fastcgi_pass");
    let anc: Vec<_> = e.ancestors(pass).map(|i| e.items[i].name.as_str()).collect();
    assert_eq!(anc, ["if", "location", "server", "http"]);
    assert_eq!(
        e.path_of(pass),
        "/usr/local/directadmin/data/users/alice/nginx.conf"
    );
    let webapps = e
        .named("location")
        .find(|&i| e.items[i].arg(0) == Some("/phpmyadmin"))
        .unwrap();
    assert_eq!(e.items[e.ancestors(webapps).next().unwrap()].name, "server");
    assert_eq!(
        src.glob("/usr/local/directadmin/data/users/*/nginx.conf")
            .unwrap()
            .len(),
        2
    );
}
