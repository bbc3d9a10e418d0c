use super::*;

const OPEN: Limits = Limits {
    max_file_size: None,
    quota: None,
    max_hole: 0,
};

fn rw(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

/// What the session's task writes without waiting, plus what the pool
/// writes after it, is exactly the client's bytes, measured once each.
fn write_in_two_steps(file: &std::fs::File) {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (first, delta) = match write_measured(file, &OPEN, 0, false, 0, &data, true) {
        Ok((res, delta)) => (res, delta),
        Err(_) => panic!("refused"),
    };
    let rest = match first {
        Ok(Progress::Done(0)) => 0,
        Ok(Progress::Blocked { at: 0, written }) => {
            let (res, d) = match write_measured(
                file,
                &OPEN,
                0,
                false,
                written as u64,
                &data[written..],
                false,
            ) {
                Ok(r) => r,
                Err(_) => panic!("refused"),
            };
            assert!(matches!(res, Ok(Progress::Done(at)) if at == written as u64));
            d
        }
        _ => panic!("the write failed"),
    };
    assert_eq!(delta + rest, data.len() as i64);
    let mut got = vec![0u8; data.len()];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut got, 0).unwrap();
    assert_eq!(got, data);
}

#[test]
fn a_write_without_waiting_then_on_the_pool_puts_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    write_in_two_steps(&rw(&dir.path().join("f")));
    // tmpfs, where the session's task writes everything itself.
    if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
        let file = rw(&dir.path().join("f"));
        if in_memory(&file) {
            write_in_two_steps(&file);
        }
    }
}

#[test]
fn a_write_over_the_quota_writes_nothing_without_waiting_either() {
    let dir = tempfile::tempdir().unwrap();
    let file = rw(&dir.path().join("f"));
    let limits = Limits {
        quota: Some(10),
        ..OPEN
    };
    let res = write_measured(&file, &limits, 5, false, 0, &[1u8; 6], true);
    assert!(matches!(res, Err(WriteError::Refused(m)) if m.contains("Quota")));
    assert_eq!(file.metadata().unwrap().len(), 0);
}
