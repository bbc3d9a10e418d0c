use super::path::PATH_MAX;
use super::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::time::Duration;
use tempfile::TempDir;

/// A temp dir holding the jail root and, beside it, a canary tree the
/// jail must never read or change.
struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    canary: PathBuf,
    jail: Jail,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let canary = tmp.path().join("canary");
    fs::create_dir(&root).unwrap();
    fs::create_dir_all(canary.join("sub")).unwrap();
    fs::write(canary.join("secret.txt"), b"top secret").unwrap();
    fs::write(canary.join("sub/inner.txt"), b"inner").unwrap();
    let jail = Jail::open(&root).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        canary,
        jail,
    }
}

/// Every path under `dir` with its kind, mode, mtime and content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let md = fs::symlink_metadata(&path).unwrap();
        let body = if md.is_file() {
            fs::read(&path).unwrap()
        } else {
            vec![]
        };
        out.insert(path.clone(), (md.mode(), md.mtime(), body));
        if md.is_dir() {
            out.extend(snapshot(&path));
        }
    }
    out
}

fn jp(s: &str) -> JailPath {
    JailPath::parse(s).unwrap()
}

fn assert_denied(r: Result<impl fmt::Debug, JailError>) {
    match r {
        Err(JailError::PermissionDenied) => {}
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

fn rw_create() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        create: true,
        ..OpenOptions::default()
    }
}

fn read_only() -> OpenOptions {
    OpenOptions {
        read: true,
        ..OpenOptions::default()
    }
}

#[test]
fn parse_table() {
    let long = "x".repeat(255);
    let cases = [
        ("", "/"),
        (".", "/"),
        ("/", "/"),
        ("a/b", "/a/b"),
        ("/a//b/", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("a/../../b", "/b"),
        ("..", "/"),
        ("//", "/"),
    ];
    for (input, want) in cases {
        assert_eq!(jp(input).as_str(), want, "input {input:?}");
    }
    assert_eq!(jp(&long).as_str(), format!("/{long}"));
}

#[test]
fn parse_refuses_nul_and_long_names() {
    for bad in ["a\0b", "\0", "/ok/\0"] {
        assert!(matches!(
            JailPath::parse(bad),
            Err(JailError::InvalidName(_))
        ));
    }
    let long = format!("/a/{}", "x".repeat(256));
    assert!(matches!(
        JailPath::parse(&long),
        Err(JailError::InvalidName(_))
    ));
    // Whole paths: 4096 bytes pass, one more is refused.
    let at_limit = "/x".repeat(PATH_MAX / 2);
    assert!(JailPath::parse(&at_limit).is_ok());
    assert!(matches!(
        JailPath::parse(&format!("{at_limit}/")),
        Err(JailError::InvalidName(r)) if r.contains("4096")
    ));
}

#[test]
fn jailpath_helpers() {
    let p = jp("/a/b/c");
    assert_eq!(p.file_name(), Some("c"));
    assert_eq!(p.parent(), Some(jp("/a/b")));
    assert_eq!(jp("/a").parent(), Some(JailPath::root()));
    assert_eq!(JailPath::root().parent(), None);
    assert_eq!(JailPath::root().file_name(), None);
    assert!(JailPath::root().is_root());
    assert_eq!(p.components().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(JailPath::root().components().count(), 0);
    assert_eq!(JailPath::root().join("x").unwrap(), jp("/x"));
    assert_eq!(p.join("d").unwrap().to_string(), "/a/b/c/d");
    for bad in ["", ".", "..", "a/b", "a\0", &"x".repeat(256)] {
        assert!(
            matches!(p.join(bad), Err(JailError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(p.starts_with(&jp("/a/b")));
    assert!(p.starts_with(&p));
    assert!(p.starts_with(&JailPath::root()));
    assert!(!jp("/ab").starts_with(&jp("/a")));
    assert!(!jp("/a").starts_with(&jp("/a/b")));
}

/// Runs every kind of operation through `via` (a path prefix whose first
/// component is a planted symlink) and checks each is refused.
fn assert_all_refused(f: &Fixture, via: &str) {
    let j = &f.jail;
    let p = |rest: &str| jp(&format!("{via}/{rest}"));
    assert_denied(j.open_file(&p("secret.txt"), &read_only()));
    assert_denied(j.open_file(&p("new.txt"), &rw_create()));
    assert_denied(j.open_file(&p("secret.txt"), &rw_create()));
    assert_denied(j.stat(&p("secret.txt")));
    assert_denied(j.stat(&p("sub")));
    assert_denied(j.read_dir(&p("sub")));
    assert_denied(j.read_dir(&jp(via)));
    assert_denied(j.mkdir(&p("newdir"), 0o755));
    assert_denied(j.create_dir_all(&p("x/y/z"), 0o755));
    assert_denied(j.remove_file(&p("secret.txt")));
    assert_denied(j.rmdir(&p("sub")));
    assert_denied(j.rename(&jp("/inside.txt"), &p("moved.txt"), true));
    assert_denied(j.rename(&p("secret.txt"), &jp("/stolen.txt"), true));
    assert_denied(j.set_times(&p("secret.txt"), None, Some(UNIX_EPOCH)));
    assert_denied(j.set_permissions(&p("secret.txt"), 0o777));
    assert!(j.stat(&p("secret.txt")).is_err());
    assert!(
        f.root.join("inside.txt").exists(),
        "rename source must stay"
    );
}

#[test]
fn absolute_symlink_to_outside_dir_is_refused() {
    let f = fixture();
    fs::write(f.root.join("inside.txt"), b"x").unwrap();
    symlink(&f.canary, f.root.join("esc")).unwrap();
    let before = snapshot(&f.canary);
    assert_all_refused(&f, "/esc");
    assert_all_refused(&f, "/../../esc");
    assert_eq!(snapshot(&f.canary), before);
}

#[test]
fn symlink_to_etc_is_refused_and_dotdot_stays_inside() {
    let f = fixture();
    // Without a link, "/../../etc/passwd" is simply a missing in-jail path.
    let etc = jp("/../../etc/passwd");
    assert!(matches!(f.jail.stat(&etc), Err(JailError::NotFound)));
    symlink("/etc", f.root.join("etc")).unwrap();
    assert!(matches!(
        f.jail.stat(&etc),
        Err(JailError::PermissionDenied)
    ));
    let r = f.jail.open_file(&etc, &read_only());
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(matches!(
        f.jail.read_dir(&jp("/etc")),
        Err(JailError::PermissionDenied)
    ));
    let r = f.jail.create_dir_all(&jp("/etc/jail-test-dir"), 0o755);
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(!Path::new("/etc/jail-test-dir").exists());
}

#[test]
fn relative_dotdot_symlink_in_middle_component_is_refused() {
    let f = fixture();
    fs::write(f.root.join("inside.txt"), b"x").unwrap();
    fs::create_dir_all(f.root.join("a/b")).unwrap();
    // root/a/b/up -> root/a/b/../../../canary, i.e. the canary dir.
    symlink("../../../canary", f.root.join("a/b/up")).unwrap();
    assert!(
        f.root.join("a/b/up/secret.txt").exists(),
        "link really escapes"
    );
    let before = snapshot(&f.canary);
    assert_all_refused(&f, "/a/b/up");
    assert_eq!(snapshot(&f.canary), before);
}

#[test]
fn symlink_pointing_inside_is_refused_too() {
    let f = fixture();
    fs::create_dir(f.root.join("real")).unwrap();
    fs::write(f.root.join("real/file"), b"x").unwrap();
    symlink("real", f.root.join("alias")).unwrap();
    let r = f.jail.open_file(&jp("/alias/file"), &read_only());
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(f.jail.open_file(&jp("/real/file"), &read_only()).is_ok());
}

#[test]
fn symlink_as_last_component() {
    let f = fixture();
    let target = f.canary.join("secret.txt");
    symlink(&target, f.root.join("link")).unwrap();
    let before = snapshot(&f.canary);
    let link = jp("/link");
    for o in [
        read_only(),
        rw_create(),
        OpenOptions {
            write: true,
            truncate: true,
            ..OpenOptions::default()
        },
    ] {
        assert!(matches!(
            f.jail.open_file(&link, &o),
            Err(JailError::PermissionDenied)
        ));
    }
    assert!(f.jail.stat(&link).unwrap().file_type().is_symlink());
    assert!(f.jail.stat(&link).is_ok());
    assert!(matches!(
        f.jail.set_permissions(&link, 0o777),
        Err(JailError::PermissionDenied)
    ));
    // utimensat(AT_SYMLINK_NOFOLLOW) touches the link itself, not the target.
    f.jail.set_times(&link, None, Some(UNIX_EPOCH)).unwrap();
    let listing = f.jail.read_dir(&JailPath::root()).unwrap();
    assert!(listing[0].metadata.file_type().is_symlink());
    assert_eq!(snapshot(&f.canary), before);
    f.jail.remove_file(&link).unwrap();
    assert!(fs::symlink_metadata(f.root.join("link")).is_err());
    assert_eq!(fs::read(&target).unwrap(), b"top secret");
}

#[test]
fn dangling_symlink_cannot_be_created_through() {
    let f = fixture();
    let target = f.canary.join("created-by-attacker");
    symlink(&target, f.root.join("dangling")).unwrap();
    let o = OpenOptions {
        write: true,
        create: true,
        ..OpenOptions::default()
    };
    let r = f.jail.open_file(&jp("/dangling"), &o);
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(!target.exists());
    let r = f.jail.create_dir_all(&jp("/dangling/x"), 0o755);
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(!target.exists());
}

#[test]
fn concurrent_symlink_swap_never_escapes() {
    let f = fixture();
    let d = f.root.join("d");
    let before = snapshot(&f.canary);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| swap_loop(&d, &f.canary, &stop));
        for i in 0..3000 {
            let p = jp(&format!("/d/f{i}"));
            let _ = f.jail.open_file(&p, &rw_create());
            let _ = f.jail.mkdir(&jp(&format!("/d/m{i}")), 0o755);
            let _ = f.jail.remove_file(&jp("/d/secret.txt"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(snapshot(&f.canary), before);
}

/// Flips `d` between a real directory and a symlink to `outside`.
fn swap_loop(d: &Path, outside: &Path, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = fs::remove_dir_all(d);
        let _ = fs::create_dir(d);
        let _ = fs::remove_dir_all(d);
        let _ = symlink(outside, d);
        std::thread::yield_now();
        let _ = fs::remove_file(d);
    }
}

#[test]
fn open_file_read_write_create_exclusive_truncate_append() {
    let f = fixture();
    let p = jp("/data.bin");
    assert!(matches!(
        f.jail.open_file(&p, &read_only()),
        Err(JailError::NotFound)
    ));
    let mut file = f.jail.open_file(&p, &rw_create()).unwrap();
    file.write_all(b"hello").unwrap();
    drop(file);
    let excl = OpenOptions {
        write: true,
        exclusive: true,
        ..OpenOptions::default()
    };
    assert!(matches!(
        f.jail.open_file(&p, &excl),
        Err(JailError::AlreadyExists)
    ));
    let append = OpenOptions {
        append: true,
        ..OpenOptions::default()
    };
    f.jail
        .open_file(&p, &append)
        .unwrap()
        .write_all(b" world")
        .unwrap();
    let mut s = String::new();
    f.jail
        .open_file(&p, &read_only())
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "hello world");
    let trunc = OpenOptions {
        write: true,
        truncate: true,
        ..OpenOptions::default()
    };
    drop(f.jail.open_file(&p, &trunc).unwrap());
    assert_eq!(fs::metadata(f.root.join("data.bin")).unwrap().len(), 0);
    let bad = OpenOptions {
        read: true,
        truncate: true,
        ..OpenOptions::default()
    };
    assert!(matches!(f.jail.open_file(&p, &bad), Err(JailError::Io(_))));
}

#[test]
fn open_file_refuses_directories_fifos_and_root() {
    let f = fixture();
    fs::create_dir(f.root.join("dir")).unwrap();
    let r = f.jail.open_file(&jp("/dir"), &read_only());
    assert!(matches!(r, Err(JailError::IsADirectory)));
    let r = f.jail.open_file(&jp("/dir"), &rw_create());
    assert!(matches!(r, Err(JailError::IsADirectory)));
    let r = f.jail.open_file(&JailPath::root(), &read_only());
    assert!(matches!(r, Err(JailError::IsADirectory)));
    let root_fd = rustix::fs::open(&f.root, OFlags::PATH, Mode::empty()).unwrap();
    let fifo = rustix::fs::FileType::Fifo;
    rustix::fs::mknodat(&root_fd, "fifo", fifo, Mode::from_bits_truncate(0o644), 0).unwrap();
    // Must return promptly (O_NONBLOCK) and refuse rather than hang.
    let r = f.jail.open_file(&jp("/fifo"), &read_only());
    assert!(matches!(r, Err(JailError::PermissionDenied)));
}

#[test]
fn opened_file_is_blocking() {
    let f = fixture();
    let file = f.jail.open_file(&jp("/x"), &rw_create()).unwrap();
    let fl = rustix::fs::fcntl_getfl(&file).unwrap();
    assert!(!fl.contains(OFlags::NONBLOCK));
}

#[test]
fn rename_overwrite_true_and_false() {
    let f = fixture();
    fs::write(f.root.join("a"), b"A").unwrap();
    fs::write(f.root.join("b"), b"B").unwrap();
    let r = f.jail.rename(&jp("/a"), &jp("/b"), false);
    assert!(matches!(r, Err(JailError::AlreadyExists)));
    assert_eq!(fs::read(f.root.join("b")).unwrap(), b"B");
    f.jail.rename(&jp("/a"), &jp("/b"), true).unwrap();
    assert_eq!(fs::read(f.root.join("b")).unwrap(), b"A");
    assert!(!f.root.join("a").exists());
    fs::create_dir(f.root.join("dir")).unwrap();
    f.jail.rename(&jp("/b"), &jp("/dir/c"), false).unwrap();
    assert_eq!(fs::read(f.root.join("dir/c")).unwrap(), b"A");
    let r = f.jail.rename(&jp("/missing"), &jp("/z"), false);
    assert!(matches!(r, Err(JailError::NotFound)));
}

#[test]
fn root_cannot_be_removed_renamed_or_rmdired() {
    let f = fixture();
    fs::create_dir(f.root.join("d")).unwrap();
    let root = JailPath::root();
    let denied = |r: Result<(), JailError>| assert!(matches!(r, Err(JailError::PermissionDenied)));
    denied(f.jail.rmdir(&root));
    denied(f.jail.remove_file(&root));
    denied(f.jail.rename(&root, &jp("/d/x"), true));
    denied(f.jail.rename(&jp("/d"), &root, true));
    denied(f.jail.rmdir(&jp("/..")));
    assert!(matches!(
        f.jail.mkdir(&root, 0o755),
        Err(JailError::AlreadyExists)
    ));
    assert!(f.root.is_dir() && f.root.join("d").is_dir());
}

#[test]
fn mkdir_rmdir_remove_file_errors() {
    let f = fixture();
    f.jail.mkdir(&jp("/d"), 0o755).unwrap();
    assert!(f.root.join("d").is_dir());
    assert!(matches!(
        f.jail.mkdir(&jp("/d"), 0o755),
        Err(JailError::AlreadyExists)
    ));
    assert!(matches!(
        f.jail.mkdir(&jp("/no/d"), 0o755),
        Err(JailError::NotFound)
    ));
    fs::write(f.root.join("d/file"), b"x").unwrap();
    assert!(matches!(f.jail.rmdir(&jp("/d")), Err(JailError::NotEmpty)));
    assert!(matches!(
        f.jail.rmdir(&jp("/d/file")),
        Err(JailError::NotADirectory)
    ));
    assert!(matches!(
        f.jail.remove_file(&jp("/d")),
        Err(JailError::IsADirectory)
    ));
    assert!(matches!(
        f.jail.stat(&jp("/d/file/x")),
        Err(JailError::NotADirectory)
    ));
    f.jail.remove_file(&jp("/d/file")).unwrap();
    f.jail.rmdir(&jp("/d")).unwrap();
    assert!(!f.root.join("d").exists());
    assert!(matches!(
        f.jail.remove_file(&jp("/d")),
        Err(JailError::NotFound)
    ));
}

#[test]
fn create_dir_all_levels() {
    let f = fixture();
    f.jail.create_dir_all(&jp("/a/b/c"), 0o755).unwrap();
    assert!(f.root.join("a/b/c").is_dir());
    f.jail.create_dir_all(&jp("/a/b/c/d"), 0o755).unwrap();
    f.jail.create_dir_all(&jp("/a/b"), 0o755).unwrap();
    f.jail.create_dir_all(&JailPath::root(), 0o755).unwrap();
    fs::write(f.root.join("a/file"), b"x").unwrap();
    let r = f.jail.create_dir_all(&jp("/a/file/x"), 0o755);
    assert!(matches!(r, Err(JailError::NotADirectory)));
    symlink(&f.canary, f.root.join("a/b/link")).unwrap();
    let r = f.jail.create_dir_all(&jp("/a/b/link/x"), 0o755);
    assert!(matches!(r, Err(JailError::PermissionDenied)));
    assert!(!f.canary.join("x").exists());
}

#[test]
fn set_times_round_trip() {
    let f = fixture();
    fs::write(f.root.join("t"), b"x").unwrap();
    let at = UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    let mt = UNIX_EPOCH + Duration::new(1_500_000_000, 987_654_321);
    f.jail.set_times(&jp("/t"), Some(at), Some(mt)).unwrap();
    let md = f.jail.stat(&jp("/t")).unwrap();
    assert_eq!(md.accessed().unwrap(), at);
    assert_eq!(md.modified().unwrap(), mt);
    // None leaves a time alone.
    f.jail.set_times(&jp("/t"), None, Some(at)).unwrap();
    let md = f.jail.stat(&jp("/t")).unwrap();
    assert_eq!((md.accessed().unwrap(), md.modified().unwrap()), (at, at));
    let before_epoch = UNIX_EPOCH - Duration::new(10, 250_000_000);
    f.jail
        .set_times(&jp("/t"), None, Some(before_epoch))
        .unwrap();
    assert_eq!(
        f.jail.stat(&jp("/t")).unwrap().modified().unwrap(),
        before_epoch
    );
    f.jail.set_times(&JailPath::root(), None, Some(mt)).unwrap();
    assert_eq!(fs::metadata(&f.root).unwrap().modified().unwrap(), mt);
}

#[test]
fn set_permissions_round_trip() {
    let f = fixture();
    fs::write(f.root.join("p"), b"x").unwrap();
    fs::create_dir(f.root.join("dir")).unwrap();
    let mode_of = |name: &str| {
        fs::metadata(f.root.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    f.jail.set_permissions(&jp("/p"), 0o100_640).unwrap();
    assert_eq!(mode_of("p"), 0o640);
    f.jail.set_permissions(&jp("/p"), 0o000).unwrap();
    assert_eq!(mode_of("p"), 0o000);
    f.jail.set_permissions(&jp("/p"), 0o604).unwrap();
    assert_eq!(mode_of("p"), 0o604);
    f.jail.set_permissions(&jp("/dir"), 0o750).unwrap();
    assert_eq!(mode_of("dir"), 0o750);
    assert_eq!(
        f.jail.stat(&jp("/dir")).unwrap().permissions().mode() & 0o7777,
        0o750
    );
}

#[test]
fn chmod_via_proc_fallback_works() {
    let f = fixture();
    fs::write(f.root.join("p"), b"x").unwrap();
    let fd = f
        .jail
        .resolve(&jp("/p"), OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())
        .unwrap();
    chmod_via_proc(&fd, 0o612).unwrap();
    assert_eq!(
        fs::metadata(f.root.join("p")).unwrap().permissions().mode() & 0o7777,
        0o612
    );
}

#[test]
fn read_dir_sorted_with_lstat_metadata() {
    let f = fixture();
    fs::write(f.root.join("b.txt"), b"12345").unwrap();
    fs::create_dir(f.root.join("a_dir")).unwrap();
    symlink(&f.canary, f.root.join("c_link")).unwrap();
    let odd = OsStr::from_bytes(b"d\xffname");
    fs::write(f.root.join(odd), b"").unwrap();
    let list = f.jail.read_dir(&JailPath::root()).unwrap();
    let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a_dir", "b.txt", "c_link", "d\u{fffd}name"]);
    assert!(list[0].metadata.is_dir());
    assert_eq!(list[1].metadata.len(), 5);
    assert!(list[2].metadata.file_type().is_symlink());
    assert!(f.jail.read_dir(&jp("/a_dir")).unwrap().is_empty());
    let r = f.jail.read_dir(&jp("/b.txt"));
    assert!(matches!(r, Err(JailError::NotADirectory)));
}

#[test]
fn list_dir_reads_pages_with_lstat_metadata_inside_the_jail() {
    let f = fixture();
    fs::create_dir(f.root.join("d")).unwrap();
    for i in 0..300 {
        fs::write(f.root.join(format!("d/f{i:03}")), vec![0u8; i % 7]).unwrap();
    }
    symlink(&f.canary, f.root.join("d/link")).unwrap();
    let mut listing = f.jail.list_dir(&jp("/d")).unwrap();
    let mut seen = Vec::new();
    loop {
        let page = listing.next_page(128).unwrap();
        assert!(page.len() <= 128);
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    assert_eq!(seen.len(), 301);
    let link = seen.iter().find(|e| e.name == "link").unwrap();
    assert!(
        link.metadata.file_type().is_symlink(),
        "the link is not followed"
    );
    let f5 = seen.iter().find(|e| e.name == "f005").unwrap();
    assert_eq!(f5.metadata.len(), 5);
    assert!(!seen.iter().any(|e| e.name == "." || e.name == ".."));
    assert_denied(f.jail.list_dir(&jp("/d/link")));
    assert!(matches!(
        f.jail.list_dir(&jp("/d/f001")),
        Err(JailError::NotADirectory)
    ));
}

#[test]
fn stat_exists_statvfs() {
    let f = fixture();
    fs::write(f.root.join("s"), b"abc").unwrap();
    assert_eq!(f.jail.stat(&jp("/s")).unwrap().len(), 3);
    assert!(f.jail.stat(&JailPath::root()).unwrap().is_dir());
    assert!(f.jail.stat(&jp("/s")).is_ok());
    assert!(f.jail.stat(&jp("/nope")).is_err());
    assert!(f.jail.statvfs().unwrap().f_bsize > 0);
    assert_eq!(f.jail.root_path(), f.root.as_path());
}

#[test]
fn jail_open_requires_a_directory() {
    let f = fixture();
    fs::write(f.root.join("file"), b"").unwrap();
    assert!(Jail::open(&f.root.join("file")).is_err());
    assert!(Jail::open(&f.root.join("missing")).is_err());
}

#[test]
fn errno_mapping() {
    let cases = [
        (Errno::NOENT, "no such"),
        (Errno::XDEV, "permission"),
        (Errno::LOOP, "permission"),
        (Errno::ACCESS, "permission"),
        (Errno::PERM, "permission"),
        (Errno::EXIST, "already"),
        (Errno::NOTEMPTY, "not empty"),
        (Errno::NOTDIR, "not a directory"),
        (Errno::ISDIR, "is a directory"),
        (Errno::IO, "i/o"),
    ];
    for (errno, text) in cases {
        assert!(
            JailError::from(errno).to_string().contains(text),
            "{errno:?}"
        );
    }
    let io = std::io::Error::from_raw_os_error(Errno::NOENT.raw_os_error());
    assert!(matches!(JailError::from(io), JailError::NotFound));
    let plain = std::io::Error::other("no errno");
    assert!(matches!(JailError::from(plain), JailError::Io(_)));
}

proptest::proptest! {
    #[test]
    fn parse_never_panics_and_normalises(s in "([a-z./\\x00]|\\.\\.|//|x{250,260}|[^\\x00]){0,40}") {
        if let Ok(p) = JailPath::parse(&s) {
            let text = p.as_str();
            proptest::prop_assert!(text.starts_with('/'));
            if !p.is_root() {
                for c in text[1..].split('/') {
                    proptest::prop_assert!(!c.is_empty() && c != "." && c != "..", "{:?}", text);
                    proptest::prop_assert!(c.len() <= 255);
                }
            }
            proptest::prop_assert!(!text.contains('\0'));
            proptest::prop_assert_eq!(JailPath::parse(text).ok(), Some(p.clone()));
        } else {
            let has_long = s.split('/').any(|c| c.len() > 255);
            proptest::prop_assert!(s.contains('\0') || has_long);
        }
    }

    #[test]
    fn parse_arbitrary_strings(s in proptest::prelude::any::<String>()) {
        if let Ok(p) = JailPath::parse(&s) {
            proptest::prop_assert!(p.as_str().starts_with('/'));
            proptest::prop_assert!(p.components().all(|c| c != "." && c != ".."));
        }
    }
}

#[test]
fn sync_dir_flushes_directories_inside_the_jail_only() {
    let f = fixture();
    fs::create_dir(f.root.join("audio")).unwrap();
    fs::write(f.root.join("audio/a.wav"), b"x").unwrap();
    f.jail.sync_dir(&jp("/audio")).unwrap();
    f.jail.sync_dir(&JailPath::root()).unwrap();
    assert!(
        f.jail.sync_dir(&jp("/audio/a.wav")).is_err(),
        "a file is no directory"
    );
    symlink(&f.canary, f.root.join("esc")).unwrap();
    assert_denied(f.jail.sync_dir(&jp("/esc")));
}
