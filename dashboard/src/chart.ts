// A small two-axis line chart on a canvas: CPU % (left axis) and memory (right axis) over time.
import { bytes } from "./dom.ts";

export interface Sample {
  t: number;
  cpuPercent: number | null;
  rssBytes: number | null;
}

const CPU_COLOUR = "#58a6ff";
const RSS_COLOUR = "#d29922";

export function drawResourceChart(canvas: HTMLCanvasElement, samples: Sample[]): void {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600;
  const hgt = canvas.clientHeight || 180;
  canvas.width = w * ratio;
  canvas.height = hgt * ratio;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, w, hgt);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#8a909c";
  if (samples.length === 0) {
    ctx.fillText("no resource_sample events yet", 10, hgt / 2);
    return;
  }
  const pad = { l: 44, r: 64, t: 8, b: 18 };
  const t0 = samples[0]!.t;
  const t1 = Math.max(samples.at(-1)!.t, t0 + 1000);
  const cpuMax = Math.max(100, ...samples.map((s) => s.cpuPercent ?? 0));
  const rssMax = Math.max(1, ...samples.map((s) => s.rssBytes ?? 0));
  const x = (t: number) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v: number, max: number) => hgt - pad.b - (v / max) * (hgt - pad.t - pad.b);

  ctx.strokeStyle = "#2a2f3a";
  ctx.beginPath();
  for (const f of [0, 0.5, 1]) {
    ctx.moveTo(pad.l, y(f * cpuMax, cpuMax));
    ctx.lineTo(w - pad.r, y(f * cpuMax, cpuMax));
  }
  ctx.stroke();
  ctx.fillText(`${Math.round(cpuMax)} %`, 4, pad.t + 8);
  ctx.fillText("0 %", 4, hgt - pad.b);
  ctx.fillText(bytes(rssMax), w - pad.r + 4, pad.t + 8);
  ctx.fillText(`${((t1 - t0) / 1000).toFixed(0)} s`, w - pad.r - 24, hgt - 4);

  const line = (colour: string, pick: (s: Sample) => number | null, max: number) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    for (const s of samples) {
      const v = pick(s);
      if (v === null) continue;
      if (started) ctx.lineTo(x(s.t), y(v, max));
      else ctx.moveTo(x(s.t), y(v, max));
      started = true;
    }
    ctx.stroke();
  };
  line(CPU_COLOUR, (s) => s.cpuPercent, cpuMax);
  line(RSS_COLOUR, (s) => s.rssBytes, rssMax);
}

export const CHART_LEGEND = [
  ["CPU %", CPU_COLOUR],
  ["memory (RSS)", RSS_COLOUR],
] as const;
