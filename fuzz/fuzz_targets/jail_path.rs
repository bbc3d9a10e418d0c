//! Every path an SFTP client sends goes through `JailPath::parse`: any
//! string must be refused or become a normalised path that cannot climb out
//! of the jail, and the lexical helpers must agree with each other.
#![no_main]

use depot::jail::JailPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let client = String::from_utf8_lossy(data);
    let Ok(path) = JailPath::parse(&client) else {
        return;
    };
    let s = path.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    assert!(!s.contains('\0'));
    if s != "/" {
        for comp in s[1..].split('/') {
            assert!(!matches!(comp, "" | "." | ".."), "{s:?}");
            assert!(comp.len() <= 255, "{s:?}");
        }
    }
    assert_eq!(path.to_string(), s);
    let again = JailPath::parse(s).expect("a parsed path parses again");
    assert_eq!(again, path, "parse is idempotent");
    assert_eq!(path.is_root(), s == "/");
    assert_eq!(
        path.components().count(),
        s.split('/').filter(|c| !c.is_empty()).count()
    );
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            assert!(path.starts_with(&parent) && !parent.starts_with(&path));
            assert!(path.starts_with(&JailPath::root()));
            assert_eq!(parent.join(name).expect("a component joins"), path);
        }
        (None, None) => assert!(path.is_root()),
        other => panic!("parent and file name disagree: {other:?}"),
    }
});
