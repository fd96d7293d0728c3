//! Checks the module map of docs/architecture.md ("Module map") against the code: which
//! top-level module imports which, read from every `crate::…` path under `src/`.
//! Rust accepts import cycles inside a crate, so nothing else would catch one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import modules of its own layer or of lower
/// ones, never of a higher one; no two modules may import each other, directly or not.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary and leaves",
        &[
            "vocab",
            "client_addr",
            "shutdown",
            "budget",
            "mock_upstream",
        ],
    ),
    (
        "foundations",
        &["store", "error", "crypto", "config", "telemetry"],
    ),
    (
        "engines",
        &["llm", "providers", "policy", "snapshot", "actors", "limits"],
    ),
    ("shared state", &["state"]),
    ("surfaces and start-up", &["proxy", "admin", "bootstrap"]),
    ("wiring", &["app", "cli"]),
];

/// Modules that import nothing of the crate.
const LEAVES: &[&str] = &["vocab"];

/// The only importers of the admin API.
const ADMIN_IMPORTERS: &[&str] = &["app", "cli"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules named after `crate::` in `code` (comments left out), including
/// each item of a `crate::{a, b::c}` group.
fn referenced_modules(code: &str) -> BTreeSet<String> {
    let text: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `other_crate::…`
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 1 => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.remove("");
    found
}

/// Top-level module → the other top-level modules it imports.
fn module_graph() -> Graph {
    let src = src_dir();
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if ["lib", "main", "layering"].contains(&stem) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        let mut deps = BTreeSet::new();
        for file in files {
            deps.extend(referenced_modules(&std::fs::read_to_string(&file).unwrap()));
        }
        deps.remove(stem);
        graph.insert(stem.to_string(), deps);
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// One cycle of the graph, as a path that ends where it starts.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_scanner_reads_paths_and_groups_and_skips_comments() {
    let code = "use crate::a::b;\n// crate::hidden\n/// see `crate::docs`\n\
                let x = crate::c::f();\nuse crate::{d::e, f, g::{h, i}};\n\
                use crate::{\n    j::k,\n    l,\n};\nmacro_rules! m { () => { $crate::n::o } }\n\
                use other_crate::p;";
    let found: Vec<_> = referenced_modules(code).into_iter().collect();
    assert_eq!(found, ["a", "c", "d", "f", "g", "j", "l", "n"]);
}

#[test]
fn every_top_level_module_has_a_layer() {
    let graph = module_graph();
    assert!(graph.contains_key("vocab") && graph.contains_key("proxy"));
    for module in graph.keys() {
        assert!(
            layer_of(module).is_some(),
            "src/{module} is in no layer of src/layering.rs (and docs/architecture.md)"
        );
    }
}

#[test]
fn modules_import_only_their_own_layer_or_lower_ones() {
    let graph = module_graph();
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let Some(own) = layer_of(module) else {
            continue;
        };
        for dep in deps {
            if layer_of(dep).is_some_and(|l| l > own) {
                wrong.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LAYERS[own].0,
                    LAYERS[layer_of(dep).unwrap_or(0)].0
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

#[test]
fn the_vocabulary_imports_nothing_of_the_crate() {
    let graph = module_graph();
    for leaf in LEAVES {
        assert_eq!(graph[*leaf], BTreeSet::new(), "{leaf} must be a leaf");
    }
}

#[test]
fn only_the_wiring_imports_the_admin_api() {
    let importers: Vec<_> = module_graph()
        .into_iter()
        .filter(|(m, deps)| deps.contains("admin") && !ADMIN_IMPORTERS.contains(&m.as_str()))
        .map(|(m, _)| m)
        .collect();
    assert!(
        importers.is_empty(),
        "only {ADMIN_IMPORTERS:?} may import admin, not {importers:?}"
    );
}

#[test]
fn top_level_modules_import_each_other_in_no_cycle() {
    if let Some(cycle) = find_cycle(&module_graph()) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: Graph = [("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]
        .into_iter()
        .map(|(m, deps)| (m.to_string(), deps.iter().map(|d| d.to_string()).collect()))
        .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = graph.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}
