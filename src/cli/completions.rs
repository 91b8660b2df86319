//! `statehouse completions SHELL`: tab completion for every command and flag.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  statehouse completions bash > ~/.local/share/bash-completion/completions/statehouse
  statehouse completions zsh > \"${fpath[1]}/_statehouse\"
  statehouse completions fish > ~/.config/fish/completions/statehouse.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionsArgs) {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "statehouse",
        &mut std::io::stdout(),
    );
}
