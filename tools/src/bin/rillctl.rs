//! `rillctl`: administration of a running rilld. A thin shell over `rill_tools::ctl`.

use clap::Parser;

fn main() {
    let cli = rill_tools::ctl::Cli::parse();
    let code = rill_tools::ctl::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
