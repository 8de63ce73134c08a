//! Telemetry labels and alerts in both languages (split from `i18n.rs` for
//! size): the node detail's telemetry fields and the overview's low-memory
//! and version-drift alerts.

use super::Lang;

/// A labelled telemetry field on the node detail screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Agent,
    Firmware,
    Model,
    Cpus,
    Uptime,
    Load,
    Memory,
    RootFs,
    FirstSeen,
    LastReport,
    Location,
    Contact,
    Domain,
    Autoupdater,
}

impl Field {
    /// Every field, for the completeness test.
    pub const ALL: [Field; 14] = [
        Field::Agent,
        Field::Firmware,
        Field::Model,
        Field::Cpus,
        Field::Uptime,
        Field::Load,
        Field::Memory,
        Field::RootFs,
        Field::FirstSeen,
        Field::LastReport,
        Field::Location,
        Field::Contact,
        Field::Domain,
        Field::Autoupdater,
    ];

    /// The label in `lang` (at most 11 characters: the detail's label column).
    pub fn label(self, lang: Lang) -> &'static str {
        let (en, de) = match self {
            Field::Agent => ("Agent", "Agent"),
            Field::Firmware => ("Firmware", "Firmware"),
            Field::Model => ("Model", "Modell"),
            Field::Cpus => ("CPUs", "CPUs"),
            Field::Uptime => ("Uptime", "Laufzeit"),
            Field::Load => ("Load", "Last"),
            Field::Memory => ("Memory", "Speicher"),
            Field::RootFs => ("Root fs", "Root-FS"),
            Field::FirstSeen => ("First seen", "Erstmals"),
            Field::LastReport => ("Reported", "Gemeldet"),
            Field::Location => ("Location", "Standort"),
            Field::Contact => ("Contact", "Kontakt"),
            Field::Domain => ("Domain", "Domäne"),
            Field::Autoupdater => ("Autoupdate", "Autoupdate"),
        };
        match lang {
            Lang::En => en,
            Lang::De => de,
        }
    }
}

/// The overview's low-memory alert: the nodes by name, or their count when
/// there are more than `names` can list in a line.
pub fn low_memory_alert(lang: Lang, names: &[String], percent: u64) -> String {
    let who = if names.len() <= 3 {
        names.join(", ")
    } else {
        match lang {
            Lang::En => format!("{} routers", names.len()),
            Lang::De => format!("{} Router", names.len()),
        }
    };
    match lang {
        Lang::En => format!("low memory (< {percent} % available): {who}"),
        Lang::De => format!("wenig Speicher (< {percent} % frei): {who}"),
    }
}

/// The overview's version-drift alert.
pub fn version_drift_alert(lang: Lang, older: usize, newest: &str) -> String {
    match (lang, older) {
        (Lang::En, 1) => format!("1 router runs an agent older than {newest}"),
        (Lang::En, _) => format!("{older} routers run an agent older than {newest}"),
        (Lang::De, 1) => format!("1 Router läuft mit einem Agent älter als {newest}"),
        (Lang::De, _) => format!("{older} Router laufen mit einem Agent älter als {newest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_the_label_column_in_both_languages() {
        for field in Field::ALL {
            for lang in [Lang::En, Lang::De] {
                let label = field.label(lang);
                assert!(!label.is_empty() && label.chars().count() <= 11, "{label}");
            }
        }
    }

    #[test]
    fn alerts_name_few_nodes_and_count_many() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        assert_eq!(
            low_memory_alert(Lang::En, &names, 10),
            "low memory (< 10 % available): a, b"
        );
        let many = vec!["x".to_string(); 5];
        assert_eq!(
            low_memory_alert(Lang::De, &many, 10),
            "wenig Speicher (< 10 % frei): 5 Router"
        );
        assert_eq!(
            version_drift_alert(Lang::En, 7, "0.3.0"),
            "7 routers run an agent older than 0.3.0"
        );
    }
}
