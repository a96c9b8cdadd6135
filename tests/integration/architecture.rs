//! The layering docs/architecture.md promises, checked on the source: the
//! protocol core and everything below it never import the HTTP layer or
//! the server that wires it (issue 8, item 17).

use std::path::Path;

const LOWER_LAYERS: &[&str] = &["src/oauth", "src/tokens", "src/keys", "src/store"];
const UPPER_MODULES: &[&str] = &[
    "crate::server",
    "crate::http",
    "tessera::server",
    "tessera::http",
];

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_core_and_the_store_never_import_http_or_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for layer in LOWER_LAYERS {
        rust_files(&root.join(layer), &mut files);
    }
    assert!(files.len() > 10, "the source folders moved: {files:?}");
    let offenders: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("readable source file");
            text.lines()
                .enumerate()
                .filter(|(_, line)| UPPER_MODULES.iter().any(|m| line.contains(m)))
                .map(|(n, line)| format!("{}:{}: {}", file.display(), n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "layering broken:\n{}",
        offenders.join("\n")
    );
}
