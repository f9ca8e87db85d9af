//! `cairn man DIR` (only with the `man` feature, which packaging/build-debs.sh uses): writes
//! the manual pages `cairn.1` and `cairn-<command>.1` (`cairn-sessions-list.1`, …) generated
//! from the command line definition, so a page never disagrees with `--help`. The shipped
//! binary is built without this command and without the generator.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use clap::Command;

use super::Outcome;

/// Writes one page per command into `dir`, which must exist.
pub fn write_pages(mut command: Command, dir: &Path) -> Outcome {
    // Building gives every subcommand its page name (cairn-serve) and synopsis (cairn serve).
    command.build();
    match write_page(&command, dir) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            eprintln!(
                "cairn: cannot write the manual pages to {}: {error}",
                dir.display()
            );
            Outcome::RuntimeError
        }
    }
}

fn write_page(command: &Command, dir: &Path) -> io::Result<()> {
    let name = command.get_display_name().unwrap_or(command.get_name());
    let mut page = BufWriter::new(File::create(dir.join(format!("{name}.1")))?);
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .render(&mut page)?;
    page.flush()?;
    for sub in command.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            write_page(sub, dir)?;
        }
    }
    Ok(())
}
