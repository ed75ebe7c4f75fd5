//! Our exclusive canonicalization against libxml2's (through lxml), an
//! implementation nobody here wrote, on every envelope of the corpus: the whole
//! document and the Body subtree.

mod common;

use wssgate::wss::c14n::{self, C14nOptions};

#[test]
fn corpus_matches_libxml2_exclusive_c14n() {
    let files = common::corpus_files();
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let results = common::run_interop_script("c14n_lxml.py", &args);
    let results = results.as_array().expect("a list");
    assert_eq!(results.len(), files.len());
    let mut bodies = 0;
    for (path, theirs) in files.iter().zip(results) {
        let raw = std::fs::read(path).unwrap();
        // The corpus has UTF-8, ISO-8859-1 and UTF-16 files; compare the UTF-8 ones.
        let Ok(text) = std::str::from_utf8(&raw) else {
            continue;
        };
        let declared = wssgate::wss::input::declared_encoding(text.as_bytes());
        if declared.is_some_and(|e| !e.eq_ignore_ascii_case("utf-8")) {
            continue;
        }
        let text = text.trim_start_matches('\u{feff}');
        let mut ours = Vec::new();
        c14n::canonicalize_document(text, &C14nOptions::default(), &mut ours).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            theirs["document"].as_str().unwrap(),
            "{}",
            path.display()
        );
        if let Some(body) = theirs["body"].as_str() {
            let soap = wssgate::wss::sniff_version(text.as_bytes())
                .expect("a SOAP envelope")
                .namespace();
            let ours = c14n::canonicalize_first_named(text, soap, "Body", &C14nOptions::default())
                .unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                body,
                "Body of {}",
                path.display()
            );
            bodies += 1;
        }
    }
    assert!(bodies >= 30, "{bodies} bodies compared");
}
