//! Build-time artefacts of the `sweep` CLI: the man page (clap_mangen) and
//! the shell completions (clap_complete), written to `$OUT_DIR` and copied
//! next to the binary's profile dir as `target/<profile>/man/sweep.1` and
//! `target/<profile>/completions/` for `make install`.
//! `src/cli.rs` is self-contained (clap + std), so it is compiled here as is.
#[expect(
    dead_code,
    reason = "the build script only needs the clap definition, not the helpers"
)]
#[path = "src/cli.rs"]
mod cli;

use clap::CommandFactory;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = target/<profile>/build/sweep-<hash>/out → target/<profile>.
    let profile_dir = out
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| out.clone());
    let cmd = cli::Cli::command();
    let man_dir = profile_dir.join("man");
    std::fs::create_dir_all(&man_dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(man_dir.join("sweep.1"), page)?;
    let comp_dir = profile_dir.join("completions");
    std::fs::create_dir_all(&comp_dir)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "sweep", &comp_dir)?;
    }
    Ok(())
}
