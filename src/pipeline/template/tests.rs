//! Unit and property tests of the file-name template: compiling, matching
//! the seed's names, rejections, DST changes.

use super::*;
use chrono_tz::Europe::Paris;
use proptest::prelude::*;

const SEED: &str = "{datetime:%Y_%m_%d_%H_%M_%S}_{advisor_firstname}_{advisor_lastname}_{channel}_{advisor_extension:digits}_{called_line:digits}_{contact_reason}";

fn seed() -> Template {
    Template::compile(SEED).unwrap()
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn dt(rfc3339: &str) -> Option<DateTime<FixedOffset>> {
    Some(DateTime::parse_from_rfc3339(rfc3339).unwrap())
}

#[test]
fn seed_example() {
    let got = seed()
        .parse(
            "2026_02_11_15_20_33_Jean-Pierre_Dupont_Entrant_478_0682316817_163",
            Paris,
        )
        .unwrap();
    let want = Parsed {
        fields: fields(&[
            ("advisor_firstname", "Jean-Pierre"),
            ("advisor_lastname", "Dupont"),
            ("channel", "Entrant"),
            ("advisor_extension", "478"),
            ("called_line", "0682316817"),
            ("contact_reason", "163"),
        ]),
        datetime: dt("2026-02-11T15:20:33+01:00"),
        clock: None,
    };
    assert_eq!(got, want);
    // The untyped variant gives the same result for this name.
    let untyped = SEED.replace(":digits", "");
    let stem = "2026_02_11_15_20_33_Jean-Pierre_Dupont_Entrant_478_0682316817_163";
    assert_eq!(
        Template::compile(&untyped).unwrap().parse(stem, Paris),
        Ok(want)
    );
}

#[test]
fn seed_rejections() {
    let cases = [
        (
            "2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817",
            "expected 6 fields after the datetime, found 5",
        ),
        (
            "2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163_x",
            "expected 6 fields after the datetime, found 7",
        ),
        (
            "2026_02_11_15_20_33",
            "expected 6 fields after the datetime, found 0",
        ),
        (
            "2026_02_11_15_20_33xJean_Dupont_Entrant_478_0682316817_163",
            "expected '_' after the datetime",
        ),
        (
            "2026_02_11_15_20_33_Jean_Dupont_Entrant_A12_0682316817_163",
            "advisor_extension: 'A12' is not digits",
        ),
        (
            "2026_02_11_15_20_33_Jean__Entrant_478_0682316817_163",
            "advisor_lastname is empty",
        ),
        (
            "2026_02_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_",
            "contact_reason is empty",
        ),
        (
            "2026_02_30_10_00_00_Jean_Dupont_Entrant_478_0682316817_163",
            "datetime: '2026_02_30_10_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S",
        ),
        (
            "2026_02_11_25_00_00_Jean_Dupont_Entrant_478_0682316817_163",
            "datetime: '2026_02_11_25_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S",
        ),
        (
            "2026-02-11-15-20-33_Jean_Dupont_Entrant_478_0682316817_163",
            "datetime: '2026-02-11-15-20-33' does not match format %Y_%m_%d_%H_%M_%S",
        ),
        (
            "2026_2_11_15_20_33_Jean_Dupont_Entrant_478_0682316817_163",
            "datetime: '2026_2_11_15_20_33_' does not match format %Y_%m_%d_%H_%M_%S",
        ),
        (
            "2026_02",
            "datetime: '2026_02' does not match format %Y_%m_%d_%H_%M_%S",
        ),
        ("", "datetime: '' does not match format %Y_%m_%d_%H_%M_%S"),
        (
            "2026_02_29_10_00_00_Jean_Dupont_Entrant_478_0682316817_163",
            "datetime: '2026_02_29_10_00_00' is not a valid date/time for format %Y_%m_%d_%H_%M_%S",
        ),
    ];
    for (stem, want) in cases {
        assert_eq!(
            seed().parse(stem, Paris),
            Err(want.to_string()),
            "stem {stem:?}"
        );
    }
}

#[test]
fn dst_gap_and_fold_in_paris() {
    let t = Template::compile("{datetime:%Y%m%d_%H%M%S}_{id}").unwrap();
    let cases = [
        // 02:30 does not exist on 29 March: read with winter time's
        // offset, i.e. one hour later in summer time.
        (
            "20260329_023000_x",
            "2026-03-29T03:30:00+02:00",
            Some(ClockChange::Gap),
        ),
        (
            "20260329_020000_x",
            "2026-03-29T03:00:00+02:00",
            Some(ClockChange::Gap),
        ),
        (
            "20260329_025959_x",
            "2026-03-29T03:59:59+02:00",
            Some(ClockChange::Gap),
        ),
        ("20260329_015959_x", "2026-03-29T01:59:59+01:00", None),
        ("20260329_030000_x", "2026-03-29T03:00:00+02:00", None),
        // 02:30 happens twice on 25 October: the earlier (summer time) wins.
        (
            "20261025_023000_x",
            "2026-10-25T02:30:00+02:00",
            Some(ClockChange::Ambiguous),
        ),
        ("20261025_033000_x", "2026-10-25T03:30:00+01:00", None),
    ];
    for (stem, want, change) in cases {
        let got = t.parse(stem, Paris).unwrap();
        assert_eq!(got.datetime, dt(want), "stem {stem:?}");
        assert_eq!(got.clock.map(|c| c.0), change, "stem {stem:?}");
    }
    let gap = t.parse("20260329_023000_x", Paris).unwrap();
    let naive = gap.clock.unwrap().1;
    assert_eq!(naive.to_string(), "2026-03-29 02:30:00");
}

#[test]
fn other_templates() {
    type Case = (
        &'static str,
        &'static str,
        Result<
            (
                &'static [(&'static str, &'static str)],
                Option<&'static str>,
            ),
            &'static str,
        >,
    );
    let cases: &[Case] = &[
        (
            "rec-{id}-{agent}",
            "rec-42-bob",
            Ok((&[("id", "42"), ("agent", "bob")], None)),
        ),
        (
            "rec-{id}-{agent}",
            "rec-42-jean-pierre",
            Err("expected 2 fields separated by '-', found 3"),
        ),
        (
            "rec-{id}-{agent}",
            "rac-42-bob",
            Err("the name must start with 'rec-'"),
        ),
        ("rec-{id}-{agent}", "rec--bob", Err("id is empty")),
        (
            "rec-{id}-{agent}.final",
            "rec-42-bob.final",
            Ok((&[("id", "42"), ("agent", "bob")], None)),
        ),
        (
            "rec-{id}-{agent}.final",
            "rec-42-bob.final.x",
            Err("unexpected '.x' at the end of the name"),
        ),
        (
            "rec-{id}-{agent}.final",
            "rec-42-bob",
            Err("expected '.final' after the agent"),
        ),
        (
            "{a}_{b}_{c}",
            "x_y",
            Err("expected 3 fields separated by '_', found 2"),
        ),
        (
            "{a}_{b}_{c}",
            "x_y_z",
            Ok((&[("a", "x"), ("b", "y"), ("c", "z")], None)),
        ),
        (
            "{id}",
            "anything_goes here",
            Ok((&[("id", "anything_goes here")], None)),
        ),
        ("{id}", "", Err("id is empty")),
        ("{id:digits}", "12a", Err("id: '12a' is not digits")),
        (
            "{a}-{b}_{c}",
            "x-y-z_w",
            Ok((&[("a", "x"), ("b", "y-z"), ("c", "w")], None)),
        ),
        ("{a}-{b}_{c}", "xy_z", Err("expected '-' after the a")),
        (
            "{datetime:%Y%m%d}{id}",
            "20260211abc",
            Ok((&[("id", "abc")], Some("2026-02-11T00:00:00+01:00"))),
        ),
        ("{datetime:%Y%m%d}{id}", "20260211", Err("id is empty")),
        (
            "{datetime:%y%j}_{id}",
            "26042_x",
            Ok((&[("id", "x")], Some("2026-02-11T00:00:00+01:00"))),
        ),
        (
            "{datetime:%y%j}_{id}",
            "26042_x_y",
            Err("expected 1 field after the datetime, found 2"),
        ),
        (
            "{id}_{datetime:%Y-%m-%dT%H%M}",
            "abc_2026-02-11T1520",
            Ok((&[("id", "abc")], Some("2026-02-11T15:20:00+01:00"))),
        ),
        (
            "{id}_{datetime:%Y-%m-%dT%H%M}",
            "abc_2026-02-11T1520x",
            Err("unexpected 'x' at the end of the name"),
        ),
        (
            "{id}_{when:%Y%m%d}_{x}_{y}",
            "a_b_20260211_c_d",
            Err("when: 'b_202602' does not match format %Y%m%d"),
        ),
        (
            "{id}_{when:%Y%m%d}_{x}_{y}",
            "a_20260211_c_d",
            Ok((
                &[("id", "a"), ("x", "c"), ("y", "d")],
                Some("2026-02-11T00:00:00+01:00"),
            )),
        ),
        (
            "{datetime:%Y%m%d}é{id}",
            "20260211éx",
            Ok((&[("id", "x")], Some("2026-02-11T00:00:00+01:00"))),
        ),
    ];
    for (src, stem, want) in cases {
        let got = Template::compile(src).unwrap().parse(stem, Paris);
        let want = want
            .map(|(f, d)| Parsed {
                fields: fields(f),
                datetime: d.and_then(dt),
                clock: None,
            })
            .map_err(str::to_string);
        assert_eq!(got, want, "template {src:?} stem {stem:?}");
    }
}

#[test]
fn compile_errors() {
    let cases = [
        ("", "template is empty"),
        ("plain", "template has no {field}"),
        ("{a", "unclosed '{' at column 1"),
        ("x_{a_{b}", "unclosed '{' at column 3"),
        ("{a}}", "unmatched '}' at column 4 (braces are not allowed in literal text)"),
        ("{}", "empty field name at column 1"),
        ("{:digits}", "empty field name at column 1"),
        ("{Name}", "invalid field name 'Name': use lowercase letters, digits and '_'"),
        ("{a}_{a}", "field 'a' appears twice"),
        ("{a}/{b}", "'/' cannot appear in a file name template"),
        ("{a:text}", "field 'a': unknown type 'text' (expected 'digits' or a strftime format containing '%')"),
        ("{d:%Y%m%e}", "field 'd': unknown strftime specifier '%e' (supported: %Y %y %m %d %j %H %M %S %%)"),
        ("{d:%Y%m%-d}", "field 'd': unknown strftime specifier '%-' (supported: %Y %y %m %d %j %H %M %S %%)"),
        ("{d:%Y%m%d%}", "field 'd': unknown strftime specifier '%' (supported: %Y %y %m %d %j %H %M %S %%)"),
        ("{d:%Y%m%d%Y}", "field 'd': format '%Y%m%d%Y' uses a specifier twice"),
        ("{d:%Y%y%m%d}", "field 'd': format '%Y%y%m%d' uses both %Y and %y"),
        ("{d:%m%d}", "field 'd': format '%m%d' needs a year (%Y or %y)"),
        ("{d:%Y%m}", "field 'd': format '%Y%m' needs a month and a day (%m and %d) or a day of the year (%j)"),
        ("{d:%Y%j%d}", "field 'd': format '%Y%j%d' cannot combine %j with %m or %d"),
        ("{d:%Y%m%d%M}", "field 'd': format '%Y%m%d%M' has %M without %H"),
        ("{d:%Y%m%d%H%S}", "field 'd': format '%Y%m%d%H%S' has %S without %M"),
        ("{datetime}_{a}", "field 'datetime' needs a strftime format, e.g. {datetime:%Y%m%d_%H%M%S}"),
        ("{datetime:digits}", "field 'datetime' needs a strftime format, e.g. {datetime:%Y%m%d_%H%M%S}"),
        ("{a:%Y%m%d}_{b:%Y%m%d}", "only one field may have a strftime format ('a' and 'b')"),
        ("{a}{b}", "fields 'a' and 'b' need literal text between them (only a datetime field has a fixed width)"),
        ("{a:digits}{datetime:%Y%m%d}", "fields 'a' and 'datetime' need literal text between them (only a datetime field has a fixed width)"),
    ];
    for (src, want) in cases {
        let got = Template::compile(src).map_err(|e| e.to_string());
        assert_eq!(got.err().as_deref(), Some(want), "template {src:?}");
    }
}

#[test]
fn lists_fields_in_order() {
    let cases: [(&str, &[&str]); 3] = [
        (
            SEED,
            &[
                "datetime",
                "advisor_firstname",
                "advisor_lastname",
                "channel",
                "advisor_extension",
                "called_line",
                "contact_reason",
            ],
        ),
        ("rec-{id}-{agent}", &["id", "agent"]),
        ("{id}_{when:%Y%m%d}_{x}", &["id", "when", "x"]),
    ];
    for (src, want) in cases {
        assert_eq!(
            Template::compile(src).unwrap().fields(),
            want,
            "template {src:?}"
        );
    }
}

#[test]
fn splits_stem_and_extension() {
    let cases = [
        ("call.mp3", ("call", Some("mp3"))),
        ("a.b.WAV", ("a.b", Some("WAV"))),
        ("noext", ("noext", None)),
        (".hidden", (".hidden", None)),
        (".hidden.mp3", (".hidden", Some("mp3"))),
        ("trailing.", ("trailing.", None)),
        ("", ("", None)),
    ];
    for (name, want) in cases {
        assert_eq!(stem_and_extension(name), want, "name {name:?}");
    }
}

#[test]
fn long_values_are_cut_in_reasons() {
    let stem = format!("2026_02_11_15_20_33_a_b_c_{}_1_2", "x".repeat(100));
    let want = format!("advisor_extension: '{}…' is not digits", "x".repeat(64));
    assert_eq!(seed().parse(&stem, Paris), Err(want));
}

proptest! {
    #[test]
    fn any_stem_through_seed_never_panics(stem in "[0-9_a-zA-Zé€\\-\\. ]{0,80}|\\PC{0,80}|.{0,80}") {
        let _ = seed().parse(&stem, Paris);
    }

    #[test]
    fn any_source_compiles_or_refuses_without_panic(src in "[{}:%a-zA-Z0-9_\\-é/]{0,40}|.{0,40}") {
        if let Ok(t) = Template::compile(&src) {
            let _ = t.parse(&src, Paris);
            let _ = t.parse("2026_02_11_x_y", Paris);
        }
    }

    #[test]
    fn well_formed_seed_names_parse(first in "[A-Za-zé-]{1,12}", ext in "[0-9]{1,6}", reason in "[0-9A-Z]{1,5}") {
        let stem = format!("2026_02_11_15_20_33_{first}_Dupont_Entrant_{ext}_0682316817_{reason}");
        let p = seed().parse(&stem, Paris).unwrap();
        prop_assert_eq!(&p.fields["advisor_firstname"], &first);
        prop_assert_eq!(&p.fields["advisor_extension"], &ext);
        prop_assert_eq!(&p.fields["contact_reason"], &reason);
    }
}
