//! SSH key files: the server's host keys and the demo account's client key.
//!
//! A missing ed25519 key is generated on first start, written with mode 0600
//! (the private half) before any byte of it reaches the disk, never
//! overwritten once it exists.

use anyhow::{Context, Result};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Loads the host key at `path`, generating an ed25519 key there if the file
/// does not exist yet. Returns the key and whether it was just generated.
pub(crate) fn load_or_generate_host_key(path: &Path) -> Result<(PrivateKey, bool)> {
    if path.exists() {
        let key = russh::keys::load_secret_key(path, None).with_context(|| {
            format!(
                "cannot load host key {} (an OpenSSH private key without passphrase is expected)",
                path.display()
            )
        })?;
        return Ok((key, false));
    }
    let key = generate_ed25519(path, "depot host key")?;
    Ok((key, true))
}

/// Generates an ed25519 key pair: the private key at `path` (0600) and the
/// public key at `path.pub` (0644).
pub fn generate_ed25519(path: &Path, comment: &str) -> Result<PrivateKey> {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create key directory {}", dir.display()))?;
    }
    let private = key
        .to_openssh(LineEnding::LF)
        .context("cannot encode key")?;
    write_new(path, private.as_bytes(), 0o600)?;
    let public = key
        .public_key()
        .to_openssh()
        .context("cannot encode public key")?;
    let pub_path = path.with_extension(match path.extension() {
        Some(e) => format!("{}.pub", e.to_string_lossy()),
        None => "pub".to_string(),
    });
    write_new(&pub_path, format!("{public}\n").as_bytes(), 0o644)?;
    Ok(key)
}

/// Generates the client key pair of an account whose `authorized_keys_file`
/// names a missing `<account>_ed25519.pub`: the private key next to it,
/// for the operator to hand to the customer. Returns the public key, which
/// the account then accepts.
pub(crate) fn generate_client_key(account: &str, public: &Path) -> Result<PublicKey> {
    let private = public.with_extension("");
    let key = generate_ed25519(&private, &format!("{account}@depot"))?;
    tracing::info!(account, key = %private.display(), "generated client key pair for account");
    Ok(key.public_key().clone())
}

/// Creates `path` (failing if it exists) with `mode` and writes `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The SHA256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k/ssh_host_ed25519_key");
        let (k1, fresh) = load_or_generate_host_key(&p).unwrap();
        assert!(fresh);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(dir.path().join("k/ssh_host_ed25519_key.pub").exists());
        let (k2, fresh) = load_or_generate_host_key(&p).unwrap();
        assert!(!fresh);
        assert_eq!(fingerprint(k1.public_key()), fingerprint(k2.public_key()));
        assert!(fingerprint(k1.public_key()).starts_with("SHA256:"));
    }
}
