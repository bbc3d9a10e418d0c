//! What a test server is configured with, written into its temp dir the
//! way an operator writes them: `depot.toml`, one TOML file per account, and
//! the client keys the accounts trust. The in-process server and the child
//! process read the same kind of files; only the paths differ (relative to
//! the temp dir in-process, absolute with a fixed port for a child).

use super::TestResult;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One account of an in-process test server.
#[derive(Clone)]
pub struct AccountSpec {
    pub name: String,
    /// Log in with a generated ed25519 key (written to `<tmp>/keys/<name>_ed25519`).
    pub key: bool,
    /// Log in with this password (hashed into the account file).
    pub password: Option<String>,
    /// TOML appended to the account file (sections like `[audio]`).
    pub extra: String,
}

impl AccountSpec {
    /// A key-only account with an `/audio` directory taking mp3 and wav in
    /// date directories (the shape every customer has).
    pub fn audio(name: &str) -> Self {
        AccountSpec {
            name: name.to_string(),
            key: true,
            password: None,
            extra: "[audio]\ndir = \"/audio\"\nextensions = [\"mp3\", \"wav\"]\n".into(),
        }
    }

    /// An account whose file is exactly `body` (no generated key).
    pub fn raw(name: &str, body: String) -> Self {
        AccountSpec {
            name: name.to_string(),
            key: false,
            password: None,
            extra: body,
        }
    }

    pub fn with_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }
}

/// What goes into an in-process server's `depot.toml` and accounts directory.
#[derive(Clone)]
pub struct TestConfig {
    pub accounts: Vec<AccountSpec>,
    pub ban_after_failures: u32,
    pub ban_window: String,
    pub ban_duration: String,
    pub max_attempts_per_connection: u32,
    pub max_concurrent_password_checks: u32,
    /// Extra lines for `[server]` (e.g. `max_handles_per_session = 8`).
    pub server: String,
    /// Whether the HTTP API listens (on `127.0.0.1:0`).
    pub http: bool,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            accounts: vec![AccountSpec::audio("acme")],
            // High enough that no test bans itself by accident.
            ban_after_failures: 1000,
            ban_window: "5m".into(),
            ban_duration: "15m".into(),
            max_attempts_per_connection: 6,
            max_concurrent_password_checks: 2,
            server: String::new(),
            http: true,
        }
    }
}

impl TestConfig {
    /// Accounts given as whole files (`(name, body)`), fsync off, no HTTP
    /// API: a server for operating tests (reload, import, reprocess, scan).
    pub fn files(accounts: &[(&str, String)]) -> TestConfig {
        TestConfig {
            accounts: accounts
                .iter()
                .map(|(name, body)| AccountSpec::raw(name, body.clone()))
                .collect(),
            max_concurrent_password_checks: 4,
            server: "fsync = false".into(),
            http: false,
            ..Default::default()
        }
    }
}

/// The in-process server's `depot.toml`: paths relative to the temp dir,
/// ports chosen by the kernel.
pub fn depot_toml(c: &TestConfig) -> String {
    let http = if c.http {
        "[http]\nlisten = \"127.0.0.1:0\"\ntokens_file = \"tokens.toml\"\n\n"
    } else {
        ""
    };
    format!(
        "[server]\n\
         listen = \"127.0.0.1:0\"\n\
         host_keys = [\"keys/ssh_host_ed25519_key\"]\n\
         data_dir = \"data\"\n\
         accounts_dir = \"accounts\"\n\
         idle_timeout = \"2m\"\n\
         {}\n\
         \n\
         [auth]\n\
         max_attempts_per_connection = {}\n\
         ban_after_failures = {}\n\
         ban_window = {:?}\n\
         ban_duration = {:?}\n\
         max_concurrent_password_checks = {}\n\
         \n\
         {http}\
         [log]\n\
         level = \"warn\"\n",
        c.server,
        c.max_attempts_per_connection,
        c.ban_after_failures,
        c.ban_window,
        c.ban_duration,
        c.max_concurrent_password_checks,
    )
}

/// The `password_hash` value of an account or operator file for `password`.
pub fn hash_password(password: &str) -> TestResult<String> {
    Ok(depot::sftp::auth::hash_password(password)?)
}

/// Writes one file per account into `accounts_dir`, generating the key
/// pairs of key accounts into `keys_dir`.
pub fn write_accounts(
    accounts_dir: &Path,
    keys_dir: &Path,
    accounts: &[AccountSpec],
) -> TestResult {
    for a in accounts {
        let mut text = String::new();
        if a.key {
            let key_path = keys_dir.join(format!("{}_ed25519", a.name));
            depot::keys::generate_ed25519(&key_path, &format!("{}@test", a.name))?;
            let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
            writeln!(text, "authorized_keys = [{:?}]", public.trim())?;
        }
        if let Some(pw) = &a.password {
            let hash = hash_password(pw)?;
            writeln!(text, "password_hash = {hash:?}")?;
        }
        text.push_str(&a.extra);
        std::fs::write(accounts_dir.join(format!("{}.toml", a.name)), text)?;
    }
    Ok(())
}

/// What a child-process test may change in the generated configuration.
#[derive(Default)]
pub struct Options {
    /// Extra accounts: (name, TOML after the client key line).
    pub accounts: Vec<(String, String)>,
    /// Extra lines for `[server]` (e.g. `max_sessions_per_account = 256`).
    pub server: String,
    /// Lines for `[auth]`.
    pub auth: String,
    /// Where the data lives (default: `<dir>/data`).
    pub data_dir: Option<PathBuf>,
    /// Log level (default "warn").
    pub log_level: Option<String>,
}

/// The child process's `depot.toml`: absolute paths under `root` (the
/// process runs from anywhere) and a port chosen before it starts.
pub fn process_toml(root: &Path, port: u16, data_dir: &Path, opts: &Options) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nhost_keys = [\"{0}/host\"]\ndata_dir = \"{1}\"\n\
         accounts_dir = \"{0}/accounts\"\n{2}\n[auth]\n{3}\n[log]\nlevel = \"{4}\"\n",
        root.display(),
        data_dir.display(),
        opts.server,
        opts.auth,
        opts.log_level.as_deref().unwrap_or("warn"),
    )
}
