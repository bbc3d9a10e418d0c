//! What tests upload and compare: recordings with customers' file names,
//! the fixture files in tests/fixtures, deterministic content, hashes, and
//! snapshots of a directory tree for "nothing changed here" assertions.
//! Test audio is generated here, not by the library: production code keeps
//! no helpers that only tests call.

use super::TestResult;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The seed example's file name.
pub const SEED: &str = "2026_02_11_15_20_33_Jean-Pierre_Dupont_Entrant_478_0682316817_163.mp3";

/// The seed's file-name template.
pub const TEMPLATE: &str = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension}_{called_line}_{contact_reason}";

/// The password of accounts made by [`account_toml`].
pub const PASSWORD: &str = "correct horse battery staple";

/// An account file body: password login, `/audio` with the seed template,
/// then `extra` sections.
pub fn account_toml(extra: &str) -> TestResult<String> {
    let hash = super::config::hash_password(PASSWORD)?;
    Ok(format!(
        "password_hash = {hash:?}\ntimezone = \"Europe/Paris\"\n\n[audio]\ndir = \"/audio\"\nfilename = {TEMPLATE:?}\n{extra}"
    ))
}

/// A valid recording's name for call `i` (reason `reason`) and its bytes
/// (contents differ per call).
pub fn recording(i: u32, reason: &str) -> (String, Vec<u8>) {
    let (h, m, s) = (8 + i / 3600, (i / 60) % 60, i % 60);
    let name = format!(
        "2026_02_11_{h:02}_{m:02}_{s:02}_Jean-Pierre_Dupont_Entrant_478_0682316817_{reason}.wav"
    );
    let secs = 0.05 + f64::from(i % 100) * 0.001;
    (name, sine_wav(secs, 8000))
}

/// Writes `n` recordings into `<dir>/20260211/`.
pub fn recordings(dir: &Path, n: u32, reason: &str) -> TestResult<PathBuf> {
    let day = dir.join("20260211");
    std::fs::create_dir_all(&day)?;
    for i in 0..n {
        let (name, bytes) = recording(i, reason);
        std::fs::write(day.join(name), bytes)?;
    }
    Ok(dir.to_path_buf())
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The real MP3 fixture's bytes.
pub fn tone_mp3() -> Vec<u8> {
    std::fs::read(fixture("tone.mp3")).expect("tests/fixtures/tone.mp3")
}

/// A short valid WAV; `seed` varies its length so contents differ.
pub fn small_wav(seed: u32) -> Vec<u8> {
    sine_wav(0.05 + f64::from(seed % 50) * 0.001, 8000)
}

/// A 16-bit mono PCM WAV file of `seconds` of a 440 Hz tone: real audio
/// the probe accepts, its length (and so its bytes) set by `seconds`.
pub fn sine_wav(seconds: f64, sample_rate: u32) -> Vec<u8> {
    let n = (seconds * f64::from(sample_rate)) as u32;
    let data_len = n * 2;
    let mut v = Vec::with_capacity(44 + data_len as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&sample_rate.to_le_bytes());
    v.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(sample_rate);
        let s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// Deterministic, incompressible-looking test content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> TestResult<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every file and directory under `dir` with its size and content hash,
/// for "nothing changed here" assertions.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p.clone());
                out.push((p, 0, "dir".into()));
            } else {
                let h = std::fs::read(&p)
                    .map(|b| sha256_hex(&b))
                    .unwrap_or_default();
                out.push((p, md.len(), h));
            }
        }
    }
    out.sort();
    out
}
