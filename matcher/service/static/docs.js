// Renders /api/v1/openapi.json as readable, tryable forms (self-contained: no CDN, works offline).
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function fieldsOf(op) {
  const content = (op.requestBody || {}).content || {};
  const schema = (content["multipart/form-data"] || {}).schema;
  return schema ? Object.entries(schema.properties) : [];
}

function tryForm(path, method, op) {
  const form = el("form", { class: "try" });
  const fields = fieldsOf(op);
  for (const [name, prop] of fields) {
    const type = prop.format === "binary" ? "file" : "text";
    const input = el("input", { name, type, placeholder: prop.example || prop.description || "" });
    form.append(el("label", {}, `${name} `, input));
  }
  let token = null;
  if (op.security) {
    token = el("input", { type: "password", placeholder: "ingest token" });
    form.append(el("label", {}, "Bearer token ", token));
  }
  const out = el("pre", { hidden: "" });
  form.append(el("button", { type: "submit", class: "button" }, `Send ${method.toUpperCase()} ${path}`), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const init = { method: method.toUpperCase(), headers: {} };
    if (fields.length) {
      const data = new FormData();
      for (const input of form.querySelectorAll("input[name]")) {
        if (input.type === "file") { if (input.files[0]) data.append(input.name, input.files[0]); }
        else if (input.value) data.append(input.name, input.value);
      }
      init.body = data;
    }
    if (token && token.value) init.headers.Authorization = `Bearer ${token.value}`;
    out.hidden = false;
    out.textContent = "…";
    const resp = await fetch(path, init);
    const text = await resp.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: metrics */ }
    out.textContent = `HTTP ${resp.status}\n${shown}`;
  });
  return form;
}

async function render() {
  const spec = await (await fetch("/api/v1/openapi.json")).json();
  document.getElementById("title").textContent = `${spec.info.title} ${spec.info.version}`;
  document.getElementById("description").textContent = spec.info.description;
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el("section", { class: "op", id: `${method}-${path}` });
      box.append(el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), ` ${path}`));
      box.append(el("p", {}, op.summary || ""));
      if (op.description) box.append(el("p", {}, op.description));
      const rows = el("table");
      for (const [status, r] of Object.entries(op.responses || {})) {
        rows.append(el("tr", {}, el("td", {}, el("code", {}, status)), el("td", {}, r.description)));
      }
      box.append(rows, tryForm(path, method, op));
      ops.append(box);
    }
  }
}

render().catch((err) => { document.getElementById("description").textContent = `Could not load the API: ${err}`; });
