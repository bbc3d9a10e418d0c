//! Unit and property tests of metadata CSV reading: layouts, headers,
//! encodings, bounds, line numbers.

use super::decode::UTF8_BOM;
use super::*;
use proptest::prelude::*;

/// The shared sample: a quoted `;`, doubled quotes and an embedded newline.
const SAMPLE: &str = "Filename;Advisor;Comment\n\
    a.mp3;Jean;\"said \"\"hello\"\"; then left\"\n\
    b.mp3; Zoé ;\"two\nlines\"\n\
    c.mp3;Ana;plain\n";

fn utf8() -> CsvDialect {
    CsvDialect {
        delimiter: b';',
        quote: b'"',
        encoding: Encoding::Utf8,
    }
}

fn cp1252() -> CsvDialect {
    CsvDialect {
        encoding: Encoding::Windows1252,
        ..utf8()
    }
}

fn with_header(skip_rows: usize) -> Layout {
    Layout {
        skip_rows,
        header: true,
        column_map: [("Filename", "filename"), ("Advisor", "advisor_firstname")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        column_list: Vec::new(),
        filename_column: "filename".to_owned(),
    }
}

fn positional() -> Layout {
    Layout {
        skip_rows: 0,
        header: false,
        column_map: BTreeMap::new(),
        column_list: vec!["filename".to_owned(), "advisor_firstname".to_owned()],
        filename_column: "filename".to_owned(),
    }
}

fn row(line: u64, pairs: &[(&str, &str)]) -> Row {
    let fields: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Row {
        line,
        file_name: fields["filename"].clone(),
        fields,
    }
}

fn sample_row(line: u64, file: &str, advisor: &str, comment: &str) -> Row {
    row(
        line,
        &[
            ("filename", file),
            ("advisor_firstname", advisor),
            ("Comment", comment),
        ],
    )
}

fn sample_rows(first_line: u64) -> Vec<Row> {
    vec![
        sample_row(first_line, "a.mp3", "Jean", "said \"hello\"; then left"),
        sample_row(first_line + 1, "b.mp3", "Zoé", "two\nlines"),
        sample_row(first_line + 3, "c.mp3", "Ana", "plain"),
    ]
}

/// The file names the broken rows still name, in order.
fn named(mut p: Parsed, names: &[Option<&str>]) -> Parsed {
    for (e, n) in p.errors.iter_mut().zip(names) {
        e.file_name = n.map(str::to_owned);
    }
    p
}

fn ok(rows: Vec<Row>, errors: &[(u64, &str)]) -> Result<Parsed, CsvError> {
    let errors = errors
        .iter()
        .map(|(line, reason)| RowError {
            line: *line,
            reason: reason.to_string(),
            file_name: None,
        })
        .collect();
    Ok(Parsed { rows, errors })
}

/// Windows-1252 bytes for the few non-ASCII characters the tests use.
fn to_cp1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            'é' => 0xE9,
            'ç' => 0xE7,
            'û' => 0xFB,
            '€' => 0x80,
            c if c.is_ascii() => c as u8,
            c => panic!("no Windows-1252 byte for {c} in this test"),
        })
        .collect()
}

#[test]
fn parse_cases() {
    let crlf_1252 = "Filename;Advisor;Comment\r\n\
        a.mp3;François;\"coût 12€; payé\"\r\n\
        b.mp3;Zoé;\"two\r\nlines\"\r\n";
    // (name, file, dialect, layout, expected)
    type Case = (
        &'static str,
        Vec<u8>,
        CsvDialect,
        Layout,
        Result<Parsed, CsvError>,
    );
    let cases: Vec<Case> = vec![
        (
            "semicolon, quoted ; and newline, doubled quotes",
            SAMPLE.into(),
            utf8(),
            with_header(1),
            ok(sample_rows(2), &[]),
        ),
        (
            "windows-1252 with CRLF",
            to_cp1252(crlf_1252),
            cp1252(),
            with_header(1),
            ok(
                vec![
                    sample_row(2, "a.mp3", "François", "coût 12€; payé"),
                    sample_row(3, "b.mp3", "Zoé", "two\r\nlines"),
                ],
                &[],
            ),
        ),
        (
            "UTF-8 BOM",
            [UTF8_BOM, SAMPLE.as_bytes()].concat(),
            utf8(),
            with_header(1),
            ok(sample_rows(2), &[]),
        ),
        (
            "UTF-8 BOM wins over a windows-1252 setting",
            [UTF8_BOM, SAMPLE.as_bytes()].concat(),
            cp1252(),
            with_header(1),
            ok(sample_rows(2), &[]),
        ),
        (
            "title row, then the header",
            format!("Export 11/02/2026;;\n{SAMPLE}").into(),
            utf8(),
            with_header(2),
            ok(sample_rows(3), &[]),
        ),
        (
            "short row is an error, the others are kept",
            "Filename;Advisor;Comment\n\"x\ny\";Jean;c\nb.mp3;Ana\nc.mp3;Ana;ok\n".into(),
            utf8(),
            with_header(1),
            ok(
                vec![
                    sample_row(2, "x\ny", "Jean", "c"),
                    sample_row(5, "c.mp3", "Ana", "ok"),
                ],
                &[(4, "expected 3 columns, found 2")],
            )
            .map(|p| named(p, &[Some("b.mp3")])),
        ),
        (
            "positional columns, extra ones named column_N, directories stripped",
            "rec/2026/a.mp3;Jean;x;y\nC:\\rec\\b.wav;Ana;;\n;Nobody;x;y\nc.mp3;Ana;x\n".into(),
            utf8(),
            positional(),
            ok(
                vec![
                    row(
                        1,
                        &[
                            ("filename", "a.mp3"),
                            ("advisor_firstname", "Jean"),
                            ("column_3", "x"),
                            ("column_4", "y"),
                        ],
                    ),
                    row(
                        2,
                        &[
                            ("filename", "b.wav"),
                            ("advisor_firstname", "Ana"),
                            ("column_3", ""),
                            ("column_4", ""),
                        ],
                    ),
                ],
                &[
                    (3, "no file name in column 'filename'"),
                    (4, "expected 4 columns, found 3"),
                ],
            )
            .map(|p| named(p, &[None, Some("c.mp3")])),
        ),
        (
            "positional row narrower than the list",
            "a.mp3\n".into(),
            utf8(),
            positional(),
            ok(vec![], &[(1, "expected 2 columns, found 1")]).map(|p| named(p, &[Some("a.mp3")])),
        ),
        (
            "duplicate file name: the last row wins, at its position",
            "Filename;Advisor;Comment\na.mp3;Jean;1\nb.mp3;Ana;2\ndir/a.mp3;Luc;3\n".into(),
            utf8(),
            with_header(1),
            ok(
                vec![
                    sample_row(3, "b.mp3", "Ana", "2"),
                    sample_row(4, "a.mp3", "Luc", "3"),
                ],
                &[],
            ),
        ),
        (
            "blank lines in the middle and at the end",
            "Filename;Advisor;Comment\n\na.mp3;Jean;1\r\n\r\n  \n;;\nb.mp3;Ana;2\n\n\n \n".into(),
            utf8(),
            with_header(1),
            ok(
                vec![
                    sample_row(3, "a.mp3", "Jean", "1"),
                    sample_row(7, "b.mp3", "Ana", "2"),
                ],
                &[],
            ),
        ),
        (
            "invalid UTF-8",
            b"Filename;Advisor\na.mp3;Fran\xE7ois\n".to_vec(),
            utf8(),
            with_header(1),
            Err(CsvError::Decode(
                "not valid UTF-8 at byte 27 (line 2); is the file Windows-1252?".into(),
            )),
        ),
        (
            "header without the file name column",
            "File;Advisor\na.mp3;Jean\n".into(),
            utf8(),
            with_header(1),
            Err(CsvError::Header(
                "no 'Filename' column in the header (columns: File, Advisor)".into(),
            )),
        ),
        (
            "header naming one key twice",
            "Filename;filename\na.mp3;b.mp3\n".into(),
            utf8(),
            with_header(1),
            Err(CsvError::Header(
                "column 'filename' appears twice in the header (again as column 2)".into(),
            )),
        ),
        (
            "empty file with a header expected",
            "\n\n".into(),
            utf8(),
            with_header(1),
            Err(CsvError::Header(
                "no header row: it should be row 1, but the file has only 0 rows".into(),
            )),
        ),
        (
            "header only",
            "Filename;Advisor\r\n".into(),
            utf8(),
            with_header(1),
            ok(vec![], &[]),
        ),
    ];
    for (name, bytes, dialect, layout, want) in cases {
        assert_eq!(parse(&bytes, &dialect, &layout), want, "case: {name}");
    }
}

#[test]
fn decode_cases() {
    let cases: Vec<(&[u8], Encoding, Result<&str, CsvError>)> = vec![
        (b"abc", Encoding::Utf8, Ok("abc")),
        (b"\xEF\xBB\xBFabc", Encoding::Utf8, Ok("abc")),
        (
            b"\xEF\xBB\xBFcaf\xC3\xA9",
            Encoding::Windows1252,
            Ok("café"),
        ),
        (b"caf\xE9 \x80", Encoding::Windows1252, Ok("café €")),
        (
            b"\xEF\xBB\xBFa\nb\xFF",
            Encoding::Utf8,
            Err(CsvError::Decode(
                "not valid UTF-8 at byte 6 (line 2); is the file Windows-1252?".into(),
            )),
        ),
    ];
    for (bytes, encoding, want) in cases {
        assert_eq!(
            decode(bytes, encoding).as_deref(),
            want.as_ref().map(|s| *s),
            "input: {bytes:?}"
        );
    }
}

/// Hands out at most one byte per read: every boundary a record, a
/// line break or a UTF-8 sequence can straddle.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some((first, rest)) = self.0.split_first() else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        buf[0] = *first;
        self.0 = rest;
        Ok(1)
    }
}

fn streamed<R: Read>(
    input: R,
    dialect: &CsvDialect,
    layout: &Layout,
    bounds: Bounds,
) -> Result<Vec<Item>, CsvError> {
    let mut items = Vec::new();
    let mut each = |item| {
        items.push(item);
        Ok(())
    };
    stream(input, dialect, layout, bounds, &mut each).unwrap()?;
    Ok(items)
}

#[test]
fn a_large_file_streams_with_the_right_lines() {
    // Well past the decoder's 64 KiB chunks: accents, CRLF, quoted
    // newlines and blank lines everywhere.
    let mut csv = String::from("Filename;Advisor;Comment\r\n");
    let mut want = Vec::new();
    let mut line = 2;
    for i in 0..5000 {
        if i % 7 == 0 {
            csv.push_str("\r\n \n");
            line += 2;
        }
        let comment = if i % 3 == 0 {
            "\"two\nlines\""
        } else {
            "éàü€"
        };
        csv.push_str(&format!("f{i}.mp3;Zoé{i};{comment}\r\n"));
        want.push((line, format!("f{i}.mp3")));
        line += if i % 3 == 0 { 2 } else { 1 };
    }
    let got: Vec<(u64, String)> = parse(csv.as_bytes(), &utf8(), &with_header(1))
        .unwrap()
        .rows
        .into_iter()
        .map(|r| (r.line, r.file_name))
        .collect();
    assert_eq!(got, want);
    let trickled = streamed(
        Trickle(csv.as_bytes()),
        &utf8(),
        &with_header(1),
        Bounds::default(),
    );
    let lines: Vec<u64> = trickled
        .unwrap()
        .into_iter()
        .map(|item| match item {
            Item::Row(r) => r.line,
            Item::Error(e) => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(lines, want.iter().map(|w| w.0).collect::<Vec<_>>());
}

#[test]
fn bounds_refuse_wide_and_huge_records() {
    let bounds = Bounds {
        max_columns: 3,
        max_record_bytes: 100,
    };
    let cases: Vec<(&str, String, Layout, CsvError)> = vec![
        (
            "wide header",
            "Filename;Advisor;a;b\nx.mp3;A;1;2\n".into(),
            with_header(1),
            CsvError::Header("the header has 4 columns; at most 3 are accepted".into()),
        ),
        (
            "wide first positional row",
            "x.mp3;A;1;2\n".into(),
            positional(),
            CsvError::Syntax {
                line: 1,
                reason: "4 columns; at most 3 are accepted".into(),
            },
        ),
        (
            "one huge quoted cell",
            format!("Filename;Advisor\n\nx.mp3;\"{}\"\n", "y".repeat(5000)),
            with_header(1),
            CsvError::Syntax {
                line: 3,
                reason: "a row of more than 100 bytes; is the delimiter or a quote wrong?".into(),
            },
        ),
        (
            "a record just over the bound",
            format!("Filename;Advisor\nx.mp3;{}\n", "y".repeat(95)),
            with_header(1),
            CsvError::Syntax {
                line: 2,
                reason: "a row of more than 100 bytes; is the delimiter or a quote wrong?".into(),
            },
        ),
    ];
    for (name, csv, layout, want) in cases {
        let got = streamed(csv.as_bytes(), &utf8(), &layout, bounds);
        assert_eq!(got, Err(want), "case: {name}");
    }
    // Within the bounds: read.
    let fits = format!("Filename;Advisor\nx.mp3;{}\n", "y".repeat(90));
    assert!(streamed(fits.as_bytes(), &utf8(), &with_header(1), bounds).is_ok());
}

#[test]
fn a_utf8_error_far_into_the_file_names_its_byte_and_line() {
    let mut csv = b"Filename;Advisor\n".to_vec();
    for i in 0..20_000 {
        csv.extend_from_slice(format!("f{i}.mp3;Zoé\n").as_bytes());
    }
    let at = csv.len() + 6;
    csv.extend_from_slice(b"x.mp3;Fran\xE7ois\n");
    let want = CsvError::Decode(format!(
        "not valid UTF-8 at byte {} (line 20002); is the file Windows-1252?",
        at + 4
    ));
    assert_eq!(parse(&csv, &utf8(), &with_header(1)), Err(want.clone()));
    let trickled = streamed(Trickle(&csv), &utf8(), &with_header(1), Bounds::default());
    assert_eq!(trickled.map(|i| i.len()), Err(want));
}

proptest! {
    #[test]
    fn one_byte_reads_give_what_whole_reads_give(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b';'), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b'a'), Just(0xC3), Just(0xA9)],
            0..300,
        ),
        header in any::<bool>(),
        latin in any::<bool>(),
    ) {
        let dialect = CsvDialect {
            encoding: if latin { Encoding::Windows1252 } else { Encoding::Utf8 },
            ..utf8()
        };
        let layout = Layout { header, ..with_header(0) };
        let whole = streamed(bytes.as_slice(), &dialect, &layout, Bounds::default());
        let trickled = streamed(Trickle(&bytes), &dialect, &layout, Bounds::default());
        prop_assert_eq!(whole, trickled);
    }

    #[test]
    fn arbitrary_input_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        delimiter in any::<u8>(),
        quote in any::<u8>(),
        header in any::<bool>(),
        skip_rows in 0usize..3,
        latin in any::<bool>(),
    ) {
        let dialect = CsvDialect {
            delimiter,
            quote,
            encoding: if latin { Encoding::Windows1252 } else { Encoding::Utf8 },
        };
        let layout = Layout { skip_rows, header, ..with_header(0) };
        let _ = parse(&bytes, &dialect, &layout);
        let _ = parse(&bytes, &dialect, &Layout { skip_rows, ..positional() });
    }
}
