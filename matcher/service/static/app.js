// The drop-a-clip page: send a file, a recording or a URL to /api/v1/identify and show the answer.
"use strict";
const $ = (id) => document.getElementById(id);

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = (seconds - m * 60).toFixed(2).padStart(5, "0");
  return `${m}:${s}`;
}

function say(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const RUNNER_UP_HASHES = 3; // fewer align by chance between any two episodes

function named(c) {
  return c.title && c.title !== c.episode_id ? `${c.episode_id} “${c.title}”` : c.episode_id;
}

function scaleText(answer) {
  // the estimated speed/pitch change of an edited clip, when the answer has one
  if (answer.edit) return answer.edit;
  const parts = [];
  const time = answer.time_scale ?? answer.speed;
  if (typeof time === "number" && Math.abs(time - 1) >= 0.005) parts.push(`played at ${Math.round(time * 100)} %`);
  const pitch = answer.pitch_scale;
  if (typeof pitch === "number" && Math.abs(pitch - 1) >= 0.005) {
    parts.push(`pitch ${(12 * Math.log2(pitch)).toFixed(1)} semitones`);
  }
  return parts.join(", ");
}

function showRunners(answer) {
  const best = `${answer.episode_id}/${answer.season}`;
  const others = (answer.candidates || []).filter(
    (c) => `${c.episode_id}/${c.season}` !== best && c.score >= RUNNER_UP_HASHES);
  $("runners").replaceChildren(...others.slice(0, 4).map((c) => {
    const li = document.createElement("li");
    li.textContent = `${named(c)}, season ${c.season}, at ${clock(c.offset_seconds)} (${c.score} matching hashes)`;
    return li;
  }));
  $("runners-box").hidden = others.length === 0 || !answer.match || answer.ambiguous;
}

function clockShort(seconds) {
  const t = Math.round(seconds);
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

function showSource(src) {
  const el = $("source");
  el.hidden = !(src && src.kind === "url");
  if (el.hidden) return;
  const by = src.uploader ? ` by ${src.uploader}` : "";
  const site = src.extractor ? ` (${src.extractor})` : "";
  const from = src.start_seconds ? `, from ${clockShort(src.start_seconds)}` : "";
  el.textContent = `From: ${src.title || src.webpage_url || src.url}${by}${site}${from}`;
}

function showTimeline(answer) {
  const list = $("timeline");
  list.replaceChildren();
  list.hidden = !answer.timeline;
  if (!answer.timeline) return false;
  for (const part of answer.timeline) {
    const li = document.createElement("li");
    const when = `${clockShort(part.start_seconds)}-${clockShort(part.end_seconds)}`;
    li.textContent = part.match ? `${when} ${part.episode_id} at ${clockShort(part.offset_seconds)}`
      : `${when} no match`;
    li.className = part.match ? "match" : "none";
    list.append(li);
  }
  const found = answer.timeline.filter((p) => p.match).length;
  $("headline").textContent = `Timeline: ${found} of ${answer.timeline.length} stretches matched`;
  for (const id of ["episode", "title", "season", "offset"]) $(id).textContent = "-";
  $("scale").hidden = $("scale-label").hidden = true;
  if (answer.match) {
    $("episode").textContent = `${answer.episode_id} (the longest stretch)`;
    $("season").textContent = answer.season;
  }
  $("confidence").textContent = `${Math.round(answer.confidence * 100)} % of the video matched`;
  $("elapsed").textContent = `${answer.elapsed_ms} ms`;
  say(answer.match ? "Found where each part of the video comes from." : "No part of the video is in the library.",
    false);
  return true;
}

function show(answer) {
  $("result").hidden = false;
  showSource(answer.source);
  if (showTimeline(answer)) {
    showRunners({ ...answer, candidates: [] });
    return;
  }
  const scale = answer.match ? scaleText(answer) : "";
  $("scale").textContent = scale;
  $("scale").hidden = $("scale-label").hidden = !scale;
  if (answer.match && answer.ambiguous) {
    const where = answer.episodes.map((e) => `${named(e)} at ${clock(e.offset_seconds)}`);
    $("headline").textContent = `Shared audio: ${answer.shared_segment || "in several episodes"}`;
    $("episode").textContent = where.join(", ");
    $("title").textContent = "-";
    $("season").textContent = answer.season ?? "several";
    $("offset").textContent = "-";
    $("confidence").textContent = `${Math.round(answer.confidence * 100)} %`;
  } else if (answer.match) {
    $("headline").textContent = `${named(answer)} at ${clock(answer.offset_seconds)}`;
    $("episode").textContent = answer.episode_id;
    $("title").textContent = answer.title && answer.title !== answer.episode_id ? answer.title : "(no title)";
    $("season").textContent = answer.season;
    const again = [...(answer.also_at || [])].sort((a, b) => a - b).map(clock);
    $("offset").textContent = clock(answer.offset_seconds)
      + (again.length ? `; the same audio is also at ${again.join(", ")}` : "");
    $("confidence").textContent = `${Math.round(answer.confidence * 100)} %`;
  } else {
    $("headline").textContent = "No match";
    for (const id of ["episode", "title", "season", "offset"]) $(id).textContent = "-";
    $("confidence").textContent = "0 %";
  }
  showRunners(answer);
  $("elapsed").textContent = `${answer.elapsed_ms} ms`;
  if (answer.ambiguous) say("This audio occurs in several episodes: a longer clip can tell them apart.", false);
  else say(answer.match ? "Found it." : "Not found: try a longer clip, or one with less music or talk over it.",
    false);
}

async function identify(body, headers) {
  say("Identifying…", false);
  $("result").hidden = true;
  try {
    const resp = await fetch("/api/v1/identify", { method: "POST", body, headers });
    const answer = await resp.json();
    if (!resp.ok) {
      const code = answer.error ? ` [${answer.error}]` : "";
      say(`${answer.message || `HTTP ${resp.status}`}${code}`, true);
      return;
    }
    show(answer);
  } catch (err) {
    say(`The request failed: ${err}`, true);
  }
}

function sendBlob(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  identify(form);
}

$("file").addEventListener("change", (e) => {
  const f = e.target.files[0];
  if (f) sendBlob(f, f.name);
});

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) sendBlob(f, f.name);
});

$("url-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = $("url").value.trim();
  if (url) {
    identify(JSON.stringify({ url }), { "Content-Type": "application/json" });
    say("Downloading the video's audio…", false);
  }
});

$("record").addEventListener("click", async () => {
  const btn = $("record");
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    say("This browser cannot record audio; choose a file instead.", true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    say(`No microphone: ${err.message || err}`, true);
    return;
  }
  const rec = new MediaRecorder(stream);
  const parts = [];
  rec.ondataavailable = (e) => parts.push(e.data);
  rec.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    btn.classList.remove("recording");
    btn.textContent = "Record 8 s";
    sendBlob(new Blob(parts, { type: rec.mimeType }), "recording.webm");
  };
  rec.start();
  btn.classList.add("recording");
  btn.textContent = "Listening…";
  say("Recording 8 seconds: hold the phone near the speaker.", false);
  setTimeout(() => rec.state !== "inactive" && rec.stop(), 8000);
});

fetch("/api/v1/stats").then((r) => (r.ok ? r.json() : null)).then((t) => {
  $("db").textContent = t ? `serving ${t.version}: ${t.episodes} episodes in ${t.seasons} `
    + `season${t.seasons === 1 ? "" : "s"}, ${t.hours.toFixed(1)} h` : "no fingerprints loaded yet";
}).catch(() => {});
