//! Properties of the configuration reader and the importer:
//!
//! - any text: diagnostics, never a panic, and every span inside the text on character
//!   boundaries;
//! - a value written in double or single quotes reads back as itself;
//! - a configuration made of ImageBuilder variables with valid values imports without
//!   errors, and the description it gives is one the staticbus reader accepts, with the
//!   domains, memory and vCPUs the configuration says.

use proptest::prelude::*;
use staticbus_config::desc::{read_description, Overrides};
use staticbus_diag::{FileId, Location, Sources};
use staticbus_import::{import, lex, Options};
use std::path::Path;

fn options() -> Options {
    Options {
        root: "/nonexistent".into(),
        out_dir: "/nonexistent".into(),
        load_cmd: None,
        name: "prop".into(),
        xen: None,
        assume_size: Some(1 << 20),
    }
}

fn spans_are_sound(text: &str, diags: &staticbus_diag::Diagnostics) {
    for d in diags {
        let locs = std::iter::once(&d.location).chain(d.secondary.iter().map(|l| &l.location));
        for l in locs {
            if let Location::Span { span } = l {
                let r = span.range();
                assert!(r.start <= r.end && r.end <= text.len(), "{d:?}");
                assert!(
                    text.is_char_boundary(r.start) && text.is_char_boundary(r.end),
                    "{d:?}"
                );
            }
        }
    }
}

/// Text built from the pieces configurations are made of, so the reader's paths are hit
/// far more often than by random characters.
fn config_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("NUM_DOMUS=".to_string()),
        Just("DOMU_MEM[0]=".to_string()),
        Just("DOMU_KERNEL[".to_string()),
        Just("]=".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("$".to_string()),
        Just("${".to_string()),
        Just("}".to_string()),
        Just("$(".to_string()),
        Just("\\".to_string()),
        Just("#".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("=".to_string()),
        Just("export ".to_string()),
        Just("0x40000000".to_string()),
        Just("512".to_string()),
        Just(";".to_string()),
        "[a-zA-Z_]{1,8}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_gives_diagnostics_not_panics(text in prop_oneof![config_like(), "\\PC{0,200}"]) {
        let (_, d) = lex::lex(FileId(0), &text);
        spans_are_sound(&text, &d);
        let mut sources = Sources::new();
        let file = sources.add_text("p.cfg", text.clone());
        let im = import(&sources, file, &text, &options());
        spans_are_sound(&text, &im.diags);
        // Rendering never fails either.
        let _ = staticbus_diag::render_human(&sources, &im.diags, staticbus_diag::ColorChoice::Never);
        // An import with errors writes nothing.
        prop_assert!(!(im.diags.has_errors() && im.toml.is_some()));
    }

    #[test]
    fn quoted_values_read_back(value in "[^\\x00]{0,40}") {
        let escaped: String = value
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' | '$' | '`' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let text = format!("X=\"{escaped}\"\n");
        let (a, d) = lex::lex(FileId(0), &text);
        prop_assert!(d.is_empty(), "{:?}", d);
        prop_assert_eq!(&a[0].value, &value);
        if !value.contains('\'') {
            let text = format!("Y='{value}' # comment\n");
            let (a, d) = lex::lex(FileId(0), &text);
            prop_assert!(d.is_empty(), "{:?}", d);
            prop_assert_eq!(&a[0].value, &value);
        }
    }

    #[test]
    fn valid_configurations_import_into_valid_descriptions(
        domus in prop::collection::vec((1u64..2048, 1u32..8, 0u64..3, any::<bool>(), "[ -~]{0,30}"), 1..5),
        dom0 in any::<bool>(),
        quote in prop_oneof![Just(""), Just("\""), Just("'")],
    ) {
        let mut t = String::from("MEMORY_START=0x40000000\nMEMORY_END=0x140000000\nLOAD_CMD=tftp\nDEVICE_TREE=virt.dtb\nXEN=xen\n");
        if dom0 {
            t.push_str("DOM0_KERNEL=dom0/Image\n");
        }
        t.push_str(&format!("NUM_DOMUS={}\n", domus.len()));
        for (i, (mem, cpus, enh, cmd, cmdline)) in domus.iter().enumerate() {
            t.push_str(&format!("DOMU_KERNEL[{i}]={quote}d{i}/Image{quote}\nDOMU_MEM[{i}]={quote}{mem}{quote}\nDOMU_VCPUS[{i}]={cpus}\nDOMU_ENHANCED[{i}]={enh}\n"));
            if *cmd {
                let escaped: String = cmdline
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' | '$' | '`' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                t.push_str(&format!("DOMU_CMD[{i}]=\"{escaped}\"\n"));
            }
        }
        let mut sources = Sources::new();
        let file = sources.add_text("p.cfg", t.clone());
        let im = import(&sources, file, &t, &options());
        prop_assert!(!im.diags.has_errors(), "{}\n{}", t, staticbus_diag::render_human(&sources, &im.diags, staticbus_diag::ColorChoice::Never));
        let toml = im.toml.unwrap();
        let tf = sources.add_text("p.toml", toml.clone());
        let (sys, d) = read_description(tf, &toml, "p", Path::new("/nonexistent"), &Overrides::default());
        prop_assert!(!d.has_errors(), "{}\n{}", toml, staticbus_diag::render_human(&sources, &d, staticbus_diag::ColorChoice::Never));
        let sys = sys.unwrap();
        let domu: Vec<_> = sys.domains.iter().filter(|d| !d.dom0).collect();
        prop_assert_eq!(domu.len(), domus.len());
        for (d, (mem, cpus, _, cmd, cmdline)) in domu.iter().zip(&domus) {
            prop_assert_eq!(d.memory_kib, Some(mem * 1024));
            prop_assert_eq!(d.vcpus, Some(*cpus));
            let args = d.modules[0].bootargs.clone().unwrap_or_default();
            if *cmd {
                prop_assert_eq!(&args, cmdline);
            } else {
                prop_assert_eq!(args.as_str(), "console=ttyAMA0");
            }
        }
    }
}
