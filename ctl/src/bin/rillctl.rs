//! `rillctl`: administration of a running rilld. A thin shell over `rill_ctl`.

use clap::Parser;

fn main() {
    let cli = rill_ctl::Cli::parse();
    let code = rill_ctl::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
