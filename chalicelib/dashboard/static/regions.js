// eventpipe dashboard: the Regions view. region_activity summed per geohash cell over the range,
// each cell drawn from its bounds over land, coastlines and borders (Natural Earth 1:50m from the
// world-atlas package, built into the static files: no map tiles from the network), as wide as
// the window. What is drawn is kept on window.__regions (the browser test compares it with the API).
"use strict";
(function () {
  const D = window.Dash;
  const $ = (sel) => document.querySelector(sel);
  const NS = "http://www.w3.org/2000/svg";
  const ATLAS = "dashboard/countries-50m.json";

  const BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz";
  function geohashBounds(hash) {
    let even = true; const lat = [-90, 90], lon = [-180, 180];
    for (const c of hash) {
      const bits = BASE32.indexOf(c);
      for (let b = 4; b >= 0; b--) {
        const range = even ? lon : lat, mid = (range[0] + range[1]) / 2;
        if ((bits >> b) & 1) range[0] = mid; else range[1] = mid;
        even = !even;
      }
    }
    return { south: lat[0], north: lat[1], west: lon[0], east: lon[1] };
  }

  // The atlas, fetched once (the first time the view draws) and turned into GeoJSON rings.
  let atlas = null;
  function loadAtlas() {
    if (!atlas) {
      atlas = fetch(D.base + ATLAS).then((response) => {
        if (!response.ok) throw new Error(`${ATLAS}: HTTP ${response.status}`);
        return response.json();
      }).then((world) => ({
        land: rings(topojson.feature(world, world.objects.land)),
        borders: rings(topojson.mesh(world, world.objects.countries, (a, b) => a !== b)),
      }));
      atlas.catch(() => { atlas = null; }); // try again on the next refresh
    }
    return atlas;
  }

  // Every ring / line of a GeoJSON object, each with its bounding box.
  function rings(geo) {
    const out = [];
    const add = (coords) => {
      let w = 180, e = -180, s = 90, n = -90;
      for (const [lon, lat] of coords) { w = Math.min(w, lon); e = Math.max(e, lon); s = Math.min(s, lat); n = Math.max(n, lat); }
      out.push({ coords, w, e, s, n });
    };
    const walk = (g) => {
      if (!g) return;
      if (g.type === "FeatureCollection") g.features.forEach((f) => walk(f.geometry));
      else if (g.type === "Feature") walk(g.geometry);
      else if (g.type === "GeometryCollection") g.geometries.forEach(walk);
      else if (g.type === "Polygon" || g.type === "MultiLineString") g.coordinates.forEach(add);
      else if (g.type === "MultiPolygon") g.coordinates.forEach((polygon) => polygon.forEach(add));
      else if (g.type === "LineString") add(g.coordinates);
    };
    walk(geo);
    return out;
  }

  // Equirectangular around the cells, scaled by cos(latitude): the cells' box (padded) fitted in
  // W x H, the view widened to fill it.
  function projection(cells, W, H) {
    const west = Math.min(...cells.map((c) => c.west)), east = Math.max(...cells.map((c) => c.east));
    const south = Math.min(...cells.map((c) => c.south)), north = Math.max(...cells.map((c) => c.north));
    const cx = (west + east) / 2, cy = (south + north) / 2;
    const cos = Math.max(0.2, Math.cos(cy * Math.PI / 180));
    const lonSpan = Math.max(1, (east - west) * 1.4), latSpan = Math.max(1, (north - south) * 1.4);
    const k = Math.min(W / (lonSpan * cos), H / latSpan); // pixels per degree of latitude
    const x = (lon) => W / 2 + (lon - cx) * k * cos, y = (lat) => H / 2 - (lat - cy) * k;
    const view = { w: cx - W / 2 / (k * cos), e: cx + W / 2 / (k * cos), s: cy - H / 2 / k, n: cy + H / 2 / k };
    return { x, y, view, k };
  }

  function pathOf(list, p, close) {
    const { view } = p;
    let d = "";
    for (const r of list) {
      if (r.e < view.w || r.w > view.e || r.n < view.s || r.s > view.n) continue;
      let lastX = null, lastY = null, points = 0, part = "";
      for (const [lon, lat] of r.coords) {
        const px = p.x(lon), py = p.y(lat);
        if (lastX !== null && Math.abs(px - lastX) + Math.abs(py - lastY) < 0.6) continue; // below a pixel
        part += (points ? "L" : "M") + px.toFixed(1) + "," + py.toFixed(1);
        lastX = px; lastY = py; points++;
      }
      if (points > 1) d += part + (close ? "Z" : "");
    }
    return d;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function step(span) {
    return [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30].find((s) => span / s <= 10) || 60;
  }

  function grid(svg, p, W, H) {
    const { view } = p;
    const label = (value, positive, negative) => `${+Math.abs(value).toFixed(1)}°${value >= 0 ? positive : negative}`;
    const dLat = step(view.n - view.s), dLon = step(view.e - view.w);
    for (let lat = Math.ceil(view.s / dLat) * dLat; lat <= view.n; lat += dLat) {
      svg.append(svgEl("line", { x1: 0, x2: W, y1: p.y(lat), y2: p.y(lat), class: "graticule" }),
        svgEl("text", { x: 4, y: p.y(lat) - 3, class: "graticule-label" }, label(lat, "N", "S")));
    }
    for (let lon = Math.ceil(view.w / dLon) * dLon; lon <= view.e; lon += dLon) {
      svg.append(svgEl("line", { x1: p.x(lon), x2: p.x(lon), y1: 0, y2: H, class: "graticule" }),
        svgEl("text", { x: p.x(lon) + 3, y: H - 4, class: "graticule-label" }, label(lon, "E", "W")));
    }
  }

  const regions = { last: null };

  function draw() {
    const host = $("#region-map");
    const { cells, measure, world } = regions.last;
    host.replaceChildren();
    if (!cells.length) return;
    const W = Math.max(320, host.clientWidth - 2);
    const H = Math.round(Math.max(320, Math.min(W * 0.7, window.innerHeight - host.getBoundingClientRect().top - 24)));
    const p = projection(cells, W, H);
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "map-svg" });
    svg.append(svgEl("rect", { x: 0, y: 0, width: W, height: H, class: "sea" }));
    let layers = 0;
    if (world) {
      const land = pathOf(world.land, p, true), borders = pathOf(world.borders, p, false);
      if (land) { svg.append(svgEl("path", { d: land, class: "land", "data-layer": "land" })); layers++; }
      if (borders) { svg.append(svgEl("path", { d: borders, class: "border", "data-layer": "borders" })); layers++; }
    }
    grid(svg, p, W, H);
    const max = Math.max(...cells.map((c) => c.value));
    for (const c of cells) {
      const t = c.value / max;
      const rect = svgEl("rect", { x: p.x(c.west), y: p.y(c.north), width: Math.max(2, p.x(c.east) - p.x(c.west)),
        height: Math.max(2, p.y(c.south) - p.y(c.north)), fill: `hsl(${Math.round(50 - 50 * t)},90%,${Math.round(70 - 30 * t)}%)`,
        class: "cell", "data-geohash": c.hash, "data-value": c.value });
      rect.append(svgEl("title", {}, `${c.hash}: ${measure} ${D.fmt(c.value)}`));
      svg.append(rect);
    }
    svg.append(svgEl("text", { x: W - 6, y: 14, class: "attribution", "text-anchor": "end" },
      "coastlines and borders: Natural Earth 1:50m (world-atlas)"));
    host.append(svg);
    window.__regions.map = { width: W, height: H, layers, view: p.view };
  }

  regions.refresh = async function () {
    const status = $("#region-status"), select = $("#region-measure");
    const specs = (D.views.metrics && D.views.metrics.specs) || (await D.api("v1/metrics")).metrics;
    const spec = specs.find((m) => m.name === "region_activity");
    if (!spec) { D.setStatus(status, "no region_activity metric in metrics.yaml", "empty"); return; }
    if (!select.options.length) {
      for (const m of spec.measures) select.append(D.el("option", { value: m.name, text: m.name }));
      select.addEventListener("change", () => regions.refresh());
    }
    const cellKey = spec.key.find((k) => k !== "app_id");
    const range = D.range();
    const [body, world] = await Promise.all([D.api("v1/metrics/region_activity", { ...range, limit: "10000" }),
      loadAtlas().catch((err) => ({ error: err.message }))]);
    const measure = select.value;
    const totals = new Map();
    for (const r of body.rows) if (r[cellKey]) totals.set(r[cellKey], (totals.get(r[cellKey]) || 0) + (r[measure] || 0));
    const cells = [...totals].map(([hash, value]) => ({ hash, value, ...geohashBounds(hash) }));
    window.__regions = { from: range.from, to: range.to, measure, cells, map: null };
    regions.last = { cells, measure, world: world.error ? null : world };
    draw();
    if (!cells.length) { D.setStatus(status, "no GPS pings in this range", "empty"); return; }
    const max = Math.max(...cells.map((c) => c.value));
    D.setStatus(status, `${cells.length} cell(s), max ${measure} ${D.fmt(max)} per cell over the range` +
      (world.error ? ` (map outlines unavailable: ${world.error})` : ""), world.error ? "error" : "");
  };

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (regions.last && D.current === "regions") draw(); }, 150);
  });
  D.views.regions = regions;
})();
