//! sts-dub-file: dub a WAV file through a running sts-service over Socket.IO (the demo
//! path), or in-process with `--local` (no server needed).
//!
//! The input (16-bit or float WAV, any accepted rate, mono or stereo; other rates are
//! resampled to 16 kHz mono) is cut into fragments (default 6 s), sent as one stream, and the
//! dubbed fragments are written in order to `--out` in the input's format. Each fragment's
//! transcript and translation are printed.

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sts_protocol::{AudioFormat, FragmentProcessed};

/// Options.
#[derive(Parser, Debug)]
#[command(
    name = "sts-dub-file",
    about = "Dub a WAV file through the sts-service"
)]
struct Args {
    /// Input WAV.
    #[arg(long)]
    input: PathBuf,
    /// Output WAV (dubbed, same duration and format as the input).
    #[arg(long)]
    out: PathBuf,
    /// sts-service URL.
    #[arg(long, env = "STS_SERVICE_URL", default_value = "http://127.0.0.1:3000")]
    server: String,
    /// Auth token (when the server has STS_AUTH_TOKEN).
    #[arg(long, env = "STS_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Fragment length in ms.
    #[arg(long, default_value_t = 6000, value_parser = clap::value_parser!(u32).range(1000..=30000))]
    fragment_ms: u32,
    /// Source language.
    #[arg(long, default_value = "en")]
    source_language: String,
    /// Target language.
    #[arg(long, default_value = "es")]
    target_language: String,
    /// Process in-process with the default engines instead of talking to a server.
    #[arg(long)]
    local: bool,
    /// Write the per-fragment results (without audio) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn first_value(p: Payload) -> Value {
    let v = match p {
        Payload::Text(mut v) if !v.is_empty() => v.remove(0),
        _ => Value::Null,
    };
    match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    }
}

async fn call(c: &Client, ev: &str, payload: Value) -> anyhow::Result<Value> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    c.emit_with_ack(
        ev,
        payload,
        Duration::from_secs(60),
        move |p: Payload, _c: Client| {
            let tx = tx.clone();
            async move {
                if let Some(t) = tx.lock().ok().and_then(|mut g| g.take()) {
                    let _ = t.send(first_value(p));
                }
            }
            .boxed()
        },
    )
    .await
    .with_context(|| format!("emitting {ev}"))?;
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .with_context(|| format!("no ack for {ev} within 60 s"))?
        .with_context(|| format!("ack channel for {ev} closed"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wav = livedub_audio::read_wav(&args.input)?;
    let fmt_ok = sts_protocol::ACCEPTED_SAMPLE_RATES.contains(&wav.sample_rate)
        && sts_protocol::ACCEPTED_CHANNELS.contains(&wav.channels);
    let (samples, fmt) = if fmt_ok {
        (
            wav.samples.clone(),
            AudioFormat::pcm_s16le(wav.sample_rate, wav.channels),
        )
    } else {
        let mono = livedub_audio::deinterleave_mix(&wav.samples, usize::from(wav.channels));
        (
            livedub_audio::resample(&mono, wav.sample_rate, 16000)?,
            AudioFormat::pcm_s16le(16000, 1),
        )
    };
    let pcm = livedub_audio::f32_to_i16(&samples);
    let frag_samples = fmt.samples_for_ms(args.fragment_ms);
    let chunks: Vec<&[i16]> = pcm.chunks(frag_samples).collect();
    let stream_id = format!("dub-file-{}", std::process::id());
    println!(
        "input {}: {:.2} s, {} Hz, {} ch -> {} fragment(s) of {} ms",
        args.input.display(),
        wav.duration_s(),
        fmt.sample_rate_hz,
        fmt.channels,
        chunks.len(),
        args.fragment_ms
    );
    let t0 = Instant::now();
    let results: BTreeMap<u64, FragmentProcessed> = if args.local {
        run_local(&args, &fmt, &chunks, &stream_id).await?
    } else {
        run_remote(&args, &fmt, &chunks, &stream_id).await?
    };
    let mut out: Vec<i16> = Vec::with_capacity(pcm.len());
    for (seq, chunk) in chunks.iter().enumerate() {
        let r = results.get(&(seq as u64));
        match r.and_then(|r| r.dubbed_audio.as_ref()) {
            Some(a) => out.extend(sts_protocol::decode_pcm_base64(&a.data)?),
            None => out.extend_from_slice(chunk), // fallback: original audio
        }
        if let Some(r) = r {
            println!(
                "#{seq} [{}] {} ms (asr {} / mt {} / tts {} / fit {})\n  transcript:  {}\n  translation: {}",
                r.status.as_str(),
                r.processing_time_ms,
                r.stage_ms.asr,
                r.stage_ms.translation,
                r.stage_ms.tts,
                r.stage_ms.fit,
                r.transcript,
                r.translated_text
            );
        }
    }
    livedub_audio::write_wav(
        &args.out,
        &livedub_audio::i16_to_f32(&out),
        fmt.sample_rate_hz,
        fmt.channels,
    )?;
    if let Some(j) = &args.json {
        let rows: Vec<Value> = results
            .values()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("dubbed_audio");
                }
                v
            })
            .collect();
        std::fs::write(j, serde_json::to_string_pretty(&rows)?)?;
    }
    println!(
        "dubbed audio: {} ({:.2} s) in {:.2} s",
        args.out.display(),
        out.len() as f64 / f64::from(fmt.channels) / f64::from(fmt.sample_rate_hz),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run_local(
    args: &Args,
    fmt: &AudioFormat,
    chunks: &[&[i16]],
    stream_id: &str,
) -> anyhow::Result<BTreeMap<u64, FragmentProcessed>> {
    use sts_service::pipeline::{Engines, Job, Pipeline};
    let cfg = <sts_service::Config as Parser>::try_parse_from(["sts-service"])?;
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let c2 = cfg.clone();
    let engines = tokio::task::spawn_blocking(move || Engines::load(&c2)).await??;
    let p = Pipeline::with_engines(&cfg, engines, sts_service::metrics::Metrics::new());
    let mut res = BTreeMap::new();
    for (i, c) in chunks.iter().enumerate() {
        let frames = c.len() / usize::from(fmt.channels);
        let ev = p
            .process(Job {
                fragment_id: format!("{stream_id}-{i}"),
                stream_id: stream_id.into(),
                sequence_number: i as u64,
                duration_ms: (frames as u64 * 1000 / u64::from(fmt.sample_rate_hz)) as u32,
                samples: pad_to_whole_ms(c, fmt),
                format: fmt.clone(),
                source_language: args.source_language.clone(),
                target_language: args.target_language.clone(),
                voice: None,
                deadline: None,
            })
            .await;
        res.insert(i as u64, ev);
    }
    Ok(res)
}

/// Cuts a trailing chunk to a whole number of milliseconds so its length matches the
/// `duration_ms` the protocol checks (within one frame).
fn pad_to_whole_ms(c: &[i16], fmt: &AudioFormat) -> Vec<i16> {
    let frames = c.len() / usize::from(fmt.channels);
    let ms = (frames as u64 * 1000 / u64::from(fmt.sample_rate_hz)) as u32;
    let mut v = c.to_vec();
    v.truncate(fmt.samples_for_ms(ms));
    v
}

async fn run_remote(
    args: &Args,
    fmt: &AudioFormat,
    chunks: &[&[i16]],
    stream_id: &str,
) -> anyhow::Result<BTreeMap<u64, FragmentProcessed>> {
    let results: Arc<Mutex<BTreeMap<u64, FragmentProcessed>>> = Arc::default();
    let errors: Arc<Mutex<Vec<Value>>> = Arc::default();
    let r2 = results.clone();
    let e2 = errors.clone();
    let mut b = ClientBuilder::new(args.server.clone())
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on("fragment:processed", move |p: Payload, _c: Client| {
            let r = r2.clone();
            async move {
                if let Ok(ev) = serde_json::from_value::<FragmentProcessed>(first_value(p)) {
                    if let Ok(mut g) = r.lock() {
                        g.insert(ev.sequence_number, ev);
                    }
                }
            }
            .boxed()
        })
        .on("error", move |p: Payload, _c: Client| {
            let e = e2.clone();
            async move {
                if let Ok(mut g) = e.lock() {
                    g.push(first_value(p));
                }
            }
            .boxed()
        });
    if let Some(t) = &args.token {
        b = b.auth(json!({"token": t}));
    }
    let client = b
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    // rust_socketio returns before the namespace CONNECT is acknowledged; an emit in that
    // window is lost. Give the handshake a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ack = call(
        &client,
        "stream:init",
        json!({"stream_id": stream_id, "source_language": args.source_language, "target_language": args.target_language,
               "fragment_duration_ms": args.fragment_ms, "audio": fmt}),
    )
    .await?;
    if ack["status"] != "ready" {
        bail!("stream:init rejected: {ack}");
    }
    let mut accepted = 0;
    for (i, c) in chunks.iter().enumerate() {
        let data = pad_to_whole_ms(c, fmt);
        let frames = data.len() / usize::from(fmt.channels);
        let duration_ms = (frames as u64 * 1000 / u64::from(fmt.sample_rate_hz)) as u32;
        if duration_ms == 0 {
            continue;
        }
        let payload = json!({"fragment_id": format!("{stream_id}-{i}"), "stream_id": stream_id, "sequence_number": i,
            "pts_ms": i as u64 * u64::from(args.fragment_ms), "duration_ms": duration_ms,
            "audio": sts_protocol::AudioPayload::from_samples(fmt, &data)});
        loop {
            let ack = call(&client, "fragment:data", payload.clone()).await?;
            if ack["status"] == "accepted" {
                accepted += 1;
                break;
            }
            if ack["error"]["code"] == "BACKPRESSURE" {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            eprintln!("fragment {i} rejected: {ack}");
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60 + 30 * chunks.len() as u64);
    while results.lock().map(|g| g.len()).unwrap_or(0) < accepted {
        if Instant::now() > deadline {
            eprintln!(
                "gave up waiting for {} fragment result(s)",
                accepted - results.lock().map(|g| g.len()).unwrap_or(0)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = call(&client, "stream:end", json!({"stream_id": stream_id})).await;
    let _ = client.disconnect().await;
    for e in errors.lock().map(|g| g.clone()).unwrap_or_default() {
        eprintln!("server error event: {e}");
    }
    let r = results.lock().map(|g| g.clone()).unwrap_or_default();
    Ok(r)
}
