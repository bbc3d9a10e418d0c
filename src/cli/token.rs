//! `depot token new`: makes a random API token, prints it once, and prints
//! the entry to add to the tokens file (which holds only its sha256).

use crate::config::valid_account_name;
use crate::http::tokens::{self, Scope};
use anyhow::{bail, Result};

pub fn new(name: &str, scope: &str, account: Option<&str>, json: bool) -> Result<()> {
    let Some(scope) = Scope::parse(scope) else {
        bail!("--scope must be \"read\" or \"admin\", not '{scope}'");
    };
    if name.trim().is_empty() {
        bail!("--name must say whose token this is (e.g. --name analysis)");
    }
    if let Some(a) = account {
        if !valid_account_name(a) {
            bail!("'{a}' is not an account name");
        }
        if scope == Scope::Admin {
            bail!("an admin token sees every account: drop --account, or use --scope read");
        }
    }
    let (token, toml) = tokens::generate(name, scope, account);
    if json {
        println!("{}", serde_json::json!({"token": token, "toml": toml}));
    } else {
        println!("token (shown only now; give it to its user): {token}");
        println!();
        println!("add this to the tokens file (http.tokens_file, default config/tokens.toml):");
        println!();
        print!("{toml}");
    }
    Ok(())
}
