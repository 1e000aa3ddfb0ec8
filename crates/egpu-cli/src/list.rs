//! `egpu list`: every device on every link and vendor, through `egpu::devices()`.

use egpu::{Availability, DeviceQuery};

use crate::error::CliError;

pub fn run(emulated: bool) -> Result<(), CliError> {
    let found = egpu::devices(&DeviceQuery { emulated });
    for entry in &found.devices {
        println!("{:<14} {}", entry.name.to_string(), entry.summary);
        for line in &entry.details {
            println!("{:<14} {line}", "");
        }
        match &entry.availability {
            Availability::Ready => println!("{:<14} runs work (`egpu info {}`)", "", entry.name),
            Availability::LinkOnly(why) => println!("{:<14} link only: {why}", ""),
            Availability::Unusable(why) => println!("{:<14} unusable: {why}", ""),
        }
    }
    for note in &found.notes {
        println!("{note}");
    }
    if found.devices.is_empty() && !emulated {
        println!(
            "Try the emulated eGPU: `egpu list --emulated`, `egpu info --emulated`, `egpu demo`."
        );
    }
    Ok(())
}
