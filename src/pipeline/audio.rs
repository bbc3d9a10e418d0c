//! Audio sanity: a deposit named `.mp3`/`.wav` must really
//! be audio. Probed with symphonia: container and codec recognised, at least
//! one packet decoded, and the format, duration, sample rate and channels
//! recorded on the conversation.
//!
//! The recorded format is the one the bytes show (a RIFF/WAVE header is
//! `wav`, an MPEG audio stream `mp3`), whatever the extension says; a
//! disagreeing extension is only a flag ([`extension_flag`]). Bytes that
//! cannot be either (text, office files, images) are refused before the
//! decoder library sees them: its probe would otherwise log each ordinary
//! not-audio upload as an error.

use super::Rejection;
pub(crate) use crate::record::AudioInfo;
use std::fs::File;
use std::os::unix::fs::FileExt;
use symphonia::core::codecs::{
    DecoderOptions, CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3, CODEC_TYPE_NULL,
};
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Packets decoded to prove the stream is real audio (decoding the whole
/// file would cost far more than it tells). A container that states its
/// length (WAV) stops after the first decoded packet: only the first
/// decode decides anything (a later failure is not a rejection), and its
/// channels come from the header.
const PACKETS_TO_DECODE: usize = 8;

/// How far into a file an MPEG frame sync is looked for (ID3 tags and
/// encoder padding can come first).
const SNIFF_BYTES: usize = 64 * 1024;

/// What the first bytes of a file look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Wav,
    /// An ID3 tag or an MPEG frame sync: worth handing to the decoder.
    Mpeg,
    NotAudio,
}

fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(b"RIFF") {
        // AVI, WebP and other RIFF forms are not audio this depot reads.
        return match head.get(8..12) {
            Some(b"WAVE") => Sniffed::Wav,
            _ => Sniffed::NotAudio,
        };
    }
    if head.starts_with(b"ID3") {
        return Sniffed::Mpeg;
    }
    // 11 set bits start every MPEG audio frame; 0xFF never occurs in UTF-8
    // text, so a text file can never pass.
    let sync = head.windows(2).any(|w| w[0] == 0xFF && w[1] & 0xE0 == 0xE0);
    if sync {
        Sniffed::Mpeg
    } else {
        Sniffed::NotAudio
    }
}

/// The flag a conversation carries when its extension names another
/// format than its bytes (`extension_mismatch (.mp3 holds wav)`).
pub(crate) fn extension_flag(info: &AudioInfo, file_name: &str) -> Option<String> {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e)?
        .to_ascii_lowercase();
    let same = ext == info.format || (info.format == "wav" && ext == "wave");
    (!same).then(|| format!("extension_mismatch (.{ext} holds {})", info.format))
}

pub fn probe(file: File, extension: &str) -> Result<AudioInfo, Rejection> {
    let bad = |why: &str| {
        Rejection::new(
            "audio",
            format!("not a readable {extension} audio file: {why}"),
        )
    };
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(Rejection::new("audio", "the file is empty"));
    }
    let mut head = vec![0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err(bad("cannot be read")),
        }
    }
    let sniffed = sniff(&head[..filled]);
    if sniffed == Sniffed::NotAudio {
        return Err(bad("its content is neither WAV nor MP3 audio"));
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|_| bad("unrecognised format"))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| bad("no audio track"))?
        .clone();
    let params = &track.codec_params;
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|_| bad("unsupported codec"))?;
    let sample_rate = params.sample_rate.ok_or_else(|| bad("no sample rate"))?;
    let mut channels = params.channels.map(|c| c.count() as u32).unwrap_or(0);
    let mut frames: u64 = 0;
    let mut decoded = 0usize;
    while let Ok(packet) = format.next_packet() {
        if packet.track_id() != track.id {
            continue;
        }
        // A container that states its length (WAV) needs no count of the
        // packets: once one is decoded, the rest is not read.
        if decoded >= 1 && params.n_frames.is_some() {
            break;
        }
        frames += packet.dur;
        if decoded < PACKETS_TO_DECODE {
            match decoder.decode(&packet) {
                Ok(buf) => {
                    decoded += 1;
                    channels = channels.max(buf.spec().channels.count() as u32);
                }
                Err(_) if decoded == 0 => return Err(bad("the audio data cannot be decoded")),
                Err(_) => {}
            }
        }
    }
    if decoded == 0 || frames == 0 {
        return Err(bad("no audio frames"));
    }
    let frames = params.n_frames.unwrap_or(frames);
    let format = match (sniffed, params.codec) {
        (Sniffed::Wav, _) => "wav",
        (_, c) if [CODEC_TYPE_MP3, CODEC_TYPE_MP2, CODEC_TYPE_MP1].contains(&c) => "mp3",
        // Only the WAV and MP3 readers are built in, so this is unreachable
        // in practice; the extension is the best remaining guess.
        _ => extension,
    };
    Ok(AudioInfo {
        format: format.to_ascii_lowercase(),
        duration_seconds: (frames as f64 / sample_rate as f64 * 1000.0).round() / 1000.0,
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM WAV file of `seconds` of a 440 Hz tone.
    fn sine_wav(seconds: f64, sample_rate: u32) -> Vec<u8> {
        let n = (seconds * sample_rate as f64) as u32;
        let data_len = n * 2;
        let mut v = Vec::with_capacity(44 + data_len as usize);
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes()); // PCM
        v.extend_from_slice(&1u16.to_le_bytes()); // mono
        v.extend_from_slice(&sample_rate.to_le_bytes());
        v.extend_from_slice(&(sample_rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..n {
            let t = i as f64 / sample_rate as f64;
            let s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        f
    }

    #[test]
    fn wav_is_described() {
        let info = probe(file_with(&sine_wav(1.5, 8000)), "wav").unwrap();
        assert_eq!(info.sample_rate, 8000);
        assert_eq!(info.channels, 1);
        assert!((info.duration_seconds - 1.5).abs() < 0.01, "{info:?}");
    }

    #[test]
    fn mp3_fixture_is_described() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tone.mp3"
        ))
        .unwrap();
        let info = probe(file_with(&bytes), "mp3").unwrap();
        assert_eq!(info.format, "mp3");
        assert!(info.duration_seconds > 0.5, "{info:?}");
    }

    #[test]
    fn format_comes_from_the_bytes() {
        let info = probe(file_with(&sine_wav(0.5, 8000)), "mp3").unwrap();
        assert_eq!(info.format, "wav");
        assert_eq!(
            extension_flag(&info, "call.mp3").as_deref(),
            Some("extension_mismatch (.mp3 holds wav)")
        );
        assert_eq!(extension_flag(&info, "call.WAV"), None);
        assert_eq!(extension_flag(&info, "call.wave"), None);
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tone.mp3"
        ))
        .unwrap();
        let info = probe(file_with(&bytes), "wav").unwrap();
        assert_eq!(info.format, "mp3");
        assert_eq!(
            extension_flag(&info, "call.wav").as_deref(),
            Some("extension_mismatch (.wav holds mp3)")
        );
        assert_eq!(extension_flag(&info, "call.Mp3"), None);
    }

    #[test]
    fn sniffs_without_the_decoder() {
        assert_eq!(sniff(&sine_wav(0.01, 8000)), Sniffed::Wav);
        assert_eq!(sniff(b"ID3\x04\x00"), Sniffed::Mpeg);
        assert_eq!(sniff(&[0, 0, 0xFF, 0xFB, 0x90]), Sniffed::Mpeg);
        assert_eq!(
            sniff(b"RIFF\x00\x00\x00\x00AVI \xFF\xFB"),
            Sniffed::NotAudio
        );
        assert_eq!(
            sniff("Ceci n'est pas un fichier audio, é ÿ\n".as_bytes()),
            Sniffed::NotAudio
        );
        assert_eq!(sniff(b""), Sniffed::NotAudio);
    }

    #[test]
    fn text_and_empty_files_are_rejected() {
        let e = probe(file_with(b"this is not audio at all\n"), "mp3").unwrap_err();
        assert_eq!(e.stage, "audio");
        assert_eq!(
            e.reason,
            "not a readable mp3 audio file: its content is neither WAV nor MP3 audio"
        );
        let e = probe(file_with(b""), "wav").unwrap_err();
        assert!(e.reason.contains("empty"));
    }
}
