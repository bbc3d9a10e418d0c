//! Jail escape suite: rename,
//! remove, setstat, opendir, realpath and friends through `..`, through
//! symlinks planted from outside at every level of the jail, through hard
//! links planted from outside, with Unicode look-alikes of `.` and `/`, and
//! with names of 255 and 256 bytes. A checksum listing of everything
//! outside the data directory (a canary tree included) is taken before and
//! after: it must not change at all.

use crate::harness::{connect, Depot, Session, TestResult};
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const ACCOUNT: &str = "[audio]\ndir = \"/audio\"\n";
const DATE: &str = "/audio/20260211";
const FINAL: &str = "2026_02_11_10_00_00_Jean_Dupont_Entrant_1_2_163.wav";

/// path → (kind, mode, size, sha256 or link target), for everything under
/// `root` but the data directory and the server log.
fn listing(root: &Path) -> TestResult<BTreeMap<String, (char, u32, u64, String)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let rel = p.strip_prefix(root)?.display().to_string();
            if rel == "data" || rel == "depot.log" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p)?;
            let (kind, sum) = if m.is_symlink() {
                ('l', std::fs::read_link(&p)?.display().to_string())
            } else if m.is_dir() {
                stack.push(p.clone());
                ('d', String::new())
            } else {
                ('f', crate::harness::sha256_hex(&std::fs::read(&p)?))
            };
            out.insert(rel, (kind, m.mode(), m.len(), sum));
        }
    }
    Ok(out)
}

/// Plants the canary tree beside the data dir and links into it from
/// inside the jail (as another local process could).
fn plant(depot: &Depot) -> TestResult {
    let canary = depot.dir.path().join("canary");
    std::fs::create_dir_all(canary.join("sub/deeper"))?;
    std::fs::create_dir_all(canary.join("emptydir"))?;
    for (p, mode) in [
        ("secret.txt", 0o600),
        ("sub/inner.wav", 0o644),
        ("sub/deeper/x.bin", 0o640),
        ("hard.wav", 0o640),
        ("hard2.wav", 0o640),
        ("hard-long.wav", 0o640),
    ] {
        std::fs::write(canary.join(p), format!("canary {p}"))?;
        std::fs::set_permissions(canary.join(p), std::fs::Permissions::from_mode(mode))?;
    }
    let jail = depot.jail("acme");
    let date = jail.join(&DATE[1..]);
    std::fs::create_dir_all(&date)?;
    std::fs::create_dir_all(jail.join("scratch"))?;
    let link = |target: &Path, at: &Path| std::os::unix::fs::symlink(target, at);
    for (dir, up) in [
        (&jail, "../../.."),
        (&jail.join("audio"), "../../../.."),
        (&date, "../../../../.."),
    ] {
        link(&canary, &dir.join("out"))?;
        link(&Path::new(up).join("canary"), &dir.join("up"))?;
        link(&canary.join("secret.txt"), &dir.join("file.wav"))?;
        link(&canary.join("sub"), &dir.join("dirlink"))?;
        link(Path::new("/etc"), &dir.join("etc"))?;
    }
    link(&canary.join("sub/inner.wav"), &date.join(FINAL))?;
    std::fs::hard_link(canary.join("hard.wav"), date.join("hard.wav"))?;
    std::fs::hard_link(canary.join("hard2.wav"), jail.join("hard2.wav"))?;
    let long = format!("{}.wav", "h".repeat(251));
    std::fs::hard_link(
        canary.join("hard-long.wav"),
        jail.join("scratch").join(long),
    )?;
    std::fs::write(date.join("victim.wav"), b"victim")?;
    Ok(())
}

struct Probe<'a> {
    s: &'a Session,
    /// Operations that succeeded but had to fail.
    escaped: Vec<String>,
}

fn attrs_mode(mode: u32) -> FileAttributes {
    FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    }
}

fn attrs_size(size: u64) -> FileAttributes {
    FileAttributes {
        size: Some(size),
        ..FileAttributes::empty()
    }
}

impl Probe<'_> {
    fn must_fail<T>(&mut self, what: String, r: Result<T, russh_sftp::client::error::Error>) {
        match r {
            Ok(_) => self.escaped.push(what),
            Err(russh_sftp::client::error::Error::Status(_)) => {}
            Err(e) => panic!("{what}: session broke: {e}"),
        }
    }

    async fn posix_rename(
        &self,
        from: &str,
        to: &str,
    ) -> Result<(), russh_sftp::client::error::Error> {
        use russh_sftp::extensions::HardlinkExtension;
        let data = russh_sftp::ser::to_bytes(&HardlinkExtension {
            oldpath: from.into(),
            newpath: to.into(),
        })
        .expect("serialise")
        .to_vec();
        match self
            .s
            .sftp
            .extended("posix-rename@openssh.com", data)
            .await?
        {
            russh_sftp::protocol::Packet::Status(st)
                if st.status_code == russh_sftp::protocol::StatusCode::Ok =>
            {
                Ok(())
            }
            russh_sftp::protocol::Packet::Status(st) => {
                Err(russh_sftp::client::error::Error::Status(st))
            }
            _ => Ok(()),
        }
    }

    /// Everything that must fail through a path `dir` leading outside.
    async fn through_dir(&mut self, dir: &str) {
        let sftp = &self.s.sftp;
        let secret = format!("{dir}/secret.txt");
        let r = sftp
            .open(&secret, OpenFlags::READ, FileAttributes::empty())
            .await;
        self.must_fail(format!("open {secret}"), r);
        let new = format!("{dir}/new.wav");
        let r = sftp
            .open(
                &new,
                OpenFlags::CREATE | OpenFlags::WRITE,
                FileAttributes::empty(),
            )
            .await;
        self.must_fail(format!("create {new}"), r);
        let r = sftp
            .open(
                &secret,
                OpenFlags::WRITE | OpenFlags::TRUNCATE,
                FileAttributes::empty(),
            )
            .await;
        self.must_fail(format!("truncate {secret}"), r);
        let r = sftp.opendir(dir).await;
        self.must_fail(format!("opendir {dir}"), r);
        let r = sftp.opendir(format!("{dir}/deeper")).await;
        self.must_fail(format!("opendir {dir}/deeper"), r);
        let r = sftp.stat(&secret).await;
        self.must_fail(format!("stat {secret}"), r);
        let r = sftp.remove(&secret).await;
        self.must_fail(format!("remove {secret}"), r);
        let r = sftp.rename(&secret, "/scratch/stolen.txt").await;
        self.must_fail(format!("rename {secret} out"), r);
        let r = sftp
            .rename(format!("{DATE}/victim.wav"), format!("{dir}/victim.wav"))
            .await;
        self.must_fail(format!("rename into {dir}"), r);
        let r = self
            .posix_rename(&format!("{DATE}/victim.wav"), &secret)
            .await;
        self.must_fail(format!("posix-rename onto {secret}"), r);
        let r = sftp.setstat(&secret, attrs_mode(0o777)).await;
        self.must_fail(format!("chmod {secret}"), r);
        let r = sftp.setstat(&secret, attrs_size(0)).await;
        self.must_fail(format!("truncate via setstat {secret}"), r);
        let r = sftp.setstat(dir, attrs_mode(0o777)).await;
        self.must_fail(format!("chmod {dir}"), r);
        let r = sftp
            .mkdir(format!("{dir}/newdir"), FileAttributes::empty())
            .await;
        self.must_fail(format!("mkdir in {dir}"), r);
        let r = sftp.rmdir(format!("{dir}/emptydir")).await;
        self.must_fail(format!("rmdir in {dir}"), r);
        let r = sftp.rmdir(format!("{dir}/deeper")).await;
        self.must_fail(format!("rmdir in {dir}"), r);
        let r = sftp.hardlink(&secret, "/scratch/hl.txt").await;
        self.must_fail(format!("hardlink {secret}"), r);
        let r = sftp.symlink("/scratch/sl", &secret).await;
        self.must_fail(format!("symlink to {secret}"), r);
        // realpath may answer (it is lexical) but never with a way out.
        if let Ok(name) = sftp.realpath(format!("{dir}/../..")).await {
            let p = &name.files[0].filename;
            assert!(
                p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == "."),
                "realpath gave {p}"
            );
        }
    }

    /// A planted symlink to a file outside: no access to its target.
    async fn through_file_link(&mut self, f: &str) {
        let sftp = &self.s.sftp;
        for flags in [
            OpenFlags::READ,
            OpenFlags::WRITE,
            OpenFlags::WRITE | OpenFlags::TRUNCATE,
            OpenFlags::WRITE | OpenFlags::APPEND,
            OpenFlags::CREATE | OpenFlags::WRITE | OpenFlags::TRUNCATE,
        ] {
            let r = sftp.open(f, flags, FileAttributes::empty()).await;
            self.must_fail(format!("open {f} {flags:?}"), r);
        }
        let r = sftp.setstat(f, attrs_size(0)).await;
        self.must_fail(format!("truncate via setstat {f}"), r);
        let r = sftp.setstat(f, attrs_mode(0o777)).await;
        self.must_fail(format!("chmod {f}"), r);
        let r = sftp.readlink(f).await;
        self.must_fail(format!("readlink {f}"), r);
        // Times may be set on the link itself; never on its target.
        let _ = sftp
            .setstat(
                f,
                FileAttributes {
                    atime: Some(1),
                    mtime: Some(1),
                    ..FileAttributes::empty()
                },
            )
            .await;
    }

    /// Writes through a hard link planted from outside change only the
    /// customer's name (a fresh copy), never the other link.
    async fn through_hard_link(&mut self, f: &str) -> TestResult {
        let sftp = &self.s.sftp;
        let _ = sftp.setstat(f, attrs_mode(0o777)).await;
        let h = sftp
            .open(f, OpenFlags::READ, FileAttributes::empty())
            .await?
            .handle;
        let _ = sftp.fsetstat(h.as_str(), attrs_mode(0o777)).await;
        let _ = sftp.fsetstat(h.as_str(), attrs_size(1)).await;
        sftp.close(h).await?;
        let _ = sftp.setstat(f, attrs_size(0)).await;
        let h = sftp
            .open(f, OpenFlags::WRITE, FileAttributes::empty())
            .await?
            .handle;
        sftp.write(h.as_str(), 0, b"OVERWRITTEN".to_vec()).await?;
        sftp.close(h).await?;
        // A final name is ingested after that close: wait for its turn.
        let h = crate::harness::until_every(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(50),
            "the final name to be ingested and open for writing again",
            || async move {
                match sftp
                    .open(
                        f,
                        OpenFlags::WRITE | OpenFlags::TRUNCATE,
                        FileAttributes::empty(),
                    )
                    .await
                {
                    Ok(h) => Ok(Some(h.handle)),
                    Err(e) if e.to_string().contains("ingested") => Ok(None),
                    Err(e) => Err(e.into()),
                }
            },
        )
        .await?;
        sftp.write(h.as_str(), 0, b"NEW".to_vec()).await?;
        sftp.close(h).await?;
        Ok(())
    }
}

/// Look-alikes of `.`, `..` and `/`, and NFC/NFD pairs: ordinary names.
const LOOK_ALIKES: &[&str] = &[
    "caf\u{e9}",
    "cafe\u{301}",
    "\u{2024}\u{2024}",
    "\u{2025}",
    "\u{ff0e}\u{ff0e}",
    ".\u{200b}.",
    "..\u{301}",
    "\u{ff0f}canary",
    "\u{2215}canary",
    "%2e%2e",
    "..%2fcanary",
    ".. ",
    "...",
    "..\\..\\canary",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_jail_changes() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let mut depot = Depot::new("acme", ACCOUNT)?;
    plant(&depot)?;
    depot.start()?; // generates the host key: list after it
    let before = listing(depot.dir.path())?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    let mut probe = Probe {
        s: &s,
        escaped: Vec::new(),
    };
    for level in ["", "/audio", DATE] {
        for link in ["out", "up", "dirlink", "etc"] {
            probe.through_dir(&format!("{level}/{link}")).await;
        }
        probe.through_file_link(&format!("{level}/file.wav")).await;
    }
    probe.through_file_link(&format!("{DATE}/{FINAL}")).await;
    for dots in [
        "/../canary",
        "../../../canary",
        "/audio/../../../../canary",
        "/audio/20260211/../../../../../../canary",
        "/./.././../canary/./",
        "//..//..//canary",
    ] {
        probe.through_dir(dots).await;
    }
    probe.through_hard_link(&format!("{DATE}/hard.wav")).await?;
    probe.through_hard_link("/hard2.wav").await?;
    probe
        .through_hard_link(&format!("/scratch/{}.wav", "h".repeat(251)))
        .await?;

    // Look-alikes are names like any other, created inside the jail.
    for name in LOOK_ALIKES {
        let dir = format!("/scratch/{name}");
        s.sftp.mkdir(&dir, FileAttributes::empty()).await?;
        let f = format!("{dir}/{name}.txt");
        let h = s
            .sftp
            .open(
                &f,
                OpenFlags::CREATE | OpenFlags::WRITE,
                FileAttributes::empty(),
            )
            .await?
            .handle;
        s.sftp
            .write(h.as_str(), 0, name.as_bytes().to_vec())
            .await?;
        s.sftp.close(h).await?;
        probe.through_dir(&format!("{dir}/{name}/canary")).await;
        s.sftp.rename(&f, format!("{dir}/../{name}.moved")).await?;
        s.sftp
            .setstat(format!("/scratch/{name}.moved"), attrs_mode(0o600))
            .await?;
        s.sftp.opendir(&dir).await?;
        s.sftp.rmdir(&dir).await?;
        let on_disk = depot
            .jail("acme")
            .join("scratch")
            .join(format!("{name}.moved"));
        assert_eq!(std::fs::read(&on_disk)?, name.as_bytes(), "{name:?}");
    }
    assert!(depot.jail("acme").join("scratch/caf\u{e9}.moved").exists());
    assert!(depot
        .jail("acme")
        .join("scratch/cafe\u{301}.moved")
        .exists());

    // 255 bytes is a name; 256 is refused everywhere.
    for (ok, bad) in [
        (
            format!("{}.txt", "a".repeat(251)),
            format!("{}.txt", "a".repeat(252)),
        ),
        (format!("{}a", "\u{e9}".repeat(127)), "\u{e9}".repeat(128)),
    ] {
        assert_eq!((ok.len(), bad.len()), (255, 256));
        let h = s
            .sftp
            .open(
                format!("/scratch/{ok}"),
                OpenFlags::CREATE | OpenFlags::WRITE,
                FileAttributes::empty(),
            )
            .await?
            .handle;
        s.sftp.write(h.as_str(), 0, b"255".to_vec()).await?;
        s.sftp.close(h).await?;
        assert!(depot.jail("acme").join("scratch").join(&ok).exists());
        let bad_path = format!("/scratch/{bad}");
        let r = s
            .sftp
            .open(
                &bad_path,
                OpenFlags::CREATE | OpenFlags::WRITE,
                FileAttributes::empty(),
            )
            .await;
        probe.must_fail(format!("create {bad_path}"), r);
        let r = s.sftp.mkdir(&bad_path, FileAttributes::empty()).await;
        probe.must_fail(format!("mkdir {bad_path}"), r);
        let r = s.sftp.rename(format!("/scratch/{ok}"), &bad_path).await;
        probe.must_fail(format!("rename to {bad_path}"), r);
        let r = s.sftp.realpath(&bad_path).await;
        probe.must_fail(format!("realpath {bad_path}"), r);
        let r = s.sftp.stat(format!("{bad_path}/../{ok}")).await;
        probe.must_fail(format!("stat through {bad_path}"), r);
    }
    // The planted links themselves may be removed and renamed: that
    // touches the jail only.
    for level in ["", "/audio", DATE] {
        let _ = s
            .sftp
            .rename(format!("{level}/out"), format!("{level}/out2"))
            .await;
        let _ = s.sftp.remove(format!("{level}/out2")).await;
        let _ = s.sftp.remove(format!("{level}/file.wav")).await;
        let _ = s.sftp.rmdir(format!("{level}/dirlink")).await;
    }
    let escaped = std::mem::take(&mut probe.escaped);
    drop(s);
    let after = listing(depot.dir.path())?;
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v:?} -> {:?}", after.get(k)))
        .chain(
            after
                .keys()
                .filter(|k| !before.contains_key(*k))
                .map(|k| format!("new: {k}")),
        )
        .collect();
    eprintln!(
        "jail escape: {} entries outside the data dir checked, {} changed",
        before.len(),
        changed.len()
    );
    assert!(
        escaped.is_empty(),
        "operations that had to fail succeeded: {escaped:#?}"
    );
    assert!(changed.is_empty(), "changed outside the jail: {changed:#?}");
    let log = depot.log();
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}

/// Every regular file under `dir`, by sha256: (path, mode).
fn files_by_sha(dir: &Path) -> TestResult<BTreeMap<String, (std::path::PathBuf, u32)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let m = std::fs::symlink_metadata(&p)?;
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.insert(
                    crate::harness::sha256_hex(&std::fs::read(&p)?),
                    (p, m.mode()),
                );
            }
        }
    }
    Ok(out)
}

/// Regression: the archive hard-links ingested audio, so SETSTAT (size,
/// mode) and FSETSTAT on a read handle of the customer's file changed the
/// archived copy too — a truncate destroyed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setstat_never_changes_the_archived_copy() -> TestResult {
    let _timing = crate::harness::timing_shared().await;
    let account = "[audio]\ndir = \"/audio\"\nfilename = \"{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}\"\n";
    let mut depot = Depot::new("acme", account)?;
    depot.start()?;
    let s = connect(depot.port, "acme", &depot.key()).await?;
    s.sftp.mkdir(DATE, FileAttributes::empty()).await?;
    let paths: Vec<String> = (0..3)
        .map(|i| format!("{DATE}/2026_02_11_10_00_0{i}_Jean_Dupont_Entrant_1_2_163.wav"))
        .collect();
    let mut shas = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let data = crate::harness::sine_wav(0.2 + i as f64 * 0.01, 8000);
        assert!(crate::harness::raw_upload(&s, p, &data).await?);
        shas.push(crate::harness::sha256_hex(&data));
    }
    depot.wait_ingested(std::time::Duration::from_secs(30), |n| n == 3)?;
    let archive = depot.data_dir.join("archive");
    let before = files_by_sha(&archive)?;
    for sha in &shas {
        assert!(before.contains_key(sha), "not archived");
    }
    let h = s
        .sftp
        .open(&paths[0], OpenFlags::READ, FileAttributes::empty())
        .await?
        .handle;
    let _ = s.sftp.fsetstat(h.as_str(), attrs_mode(0o777)).await;
    s.sftp.close(h).await?;
    let _ = s.sftp.setstat(&paths[1], attrs_mode(0o777)).await;
    let _ = s.sftp.setstat(&paths[2], attrs_size(0)).await;
    let after = files_by_sha(&archive)?;
    for sha in &shas {
        assert_eq!(after.get(sha), before.get(sha), "the archived copy changed");
    }
    // The customer's own names did change as asked (modes masked: no
    // group or other write).
    let jail = depot.jail("acme");
    assert_eq!(
        std::fs::metadata(jail.join(&paths[1][1..]))?.mode() & 0o777,
        0o644
    );
    assert_eq!(std::fs::metadata(jail.join(&paths[2][1..]))?.len(), 0);
    Ok(())
}
