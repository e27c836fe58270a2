// Time ranges for the query builder: the seed's presets, its 12-hour time input, and the
// zone the user reads times in. Pure functions (the clock is passed in) so they are tested
// without a browser.

/** A range in epoch seconds, both ends inclusive. 0 means open, as in the seed's `/query`. */
export interface TimeRange {
  start: number;
  end: number;
}

export type PresetId = "hour" | "day" | "week" | "all";

export const PRESETS: { id: PresetId; label: string; seconds: number | null }[] = [
  { id: "hour", label: "Last hour", seconds: 3600 },
  { id: "day", label: "Last 24 h", seconds: 86_400 },
  { id: "week", label: "Last week", seconds: 7 * 86_400 },
  { id: "all", label: "All", seconds: null },
];

/** The range a preset stands for at `now`: the last N seconds up to now, or all time. */
export function presetRange(preset: PresetId, now: Date): TimeRange {
  const found = PRESETS.find((p) => p.id === preset);
  if (!found) throw new Error(`unknown preset ${preset}`);
  if (found.seconds === null) return { start: 0, end: 0 };
  const end = Math.floor(now.getTime() / 1000);
  return { start: end - found.seconds, end };
}

/** The zone times are entered and shown in: the browser's, or UTC. */
export type Zone = "local" | "utc";

export interface ClockTime {
  hours: number; // 0-23
  minutes: number;
  seconds: number;
}

/**
 * Parses the seed's 12-hour time input: `7:05 PM`, `07:05:30 am`, `12:00AM` (midnight),
 * `12:30 pm` (half past noon). Hours 1-12, minutes and seconds 00-59, AM or PM required.
 * Returns null for anything else, so the form can say what is wrong.
 */
export function parseTime12h(text: string): ClockTime | null {
  const match = /^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp])\.?\s*[Mm]\.?\s*$/.exec(text);
  if (!match) return null;
  const hour12 = Number(match[1]);
  const minutes = Number(match[2]);
  const seconds = match[3] === undefined ? 0 : Number(match[3]);
  if (hour12 < 1 || hour12 > 12 || minutes > 59 || seconds > 59) return null;
  const pm = match[4].toLowerCase() === "p";
  const hours = (hour12 % 12) + (pm ? 12 : 0);
  return { hours, minutes, seconds };
}

/** `time` as the 12-hour text `parseTime12h` reads, e.g. `7:05:00 PM`. */
export function formatTime12h(time: ClockTime): string {
  const hour12 = time.hours % 12 === 0 ? 12 : time.hours % 12;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${hour12}:${pad(time.minutes)}:${pad(time.seconds)} ${time.hours < 12 ? "AM" : "PM"}`;
}

/**
 * Epoch seconds of a calendar date (`YYYY-MM-DD`) and a 12-hour time in `zone`. A local
 * time that does not exist (skipped by a daylight-saving change) or exists twice is
 * reported as an error rather than silently moved.
 */
export function toEpochSeconds(date: string, time: string, zone: Zone): number | string {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date.trim());
  if (!day) return `date "${date}" is not YYYY-MM-DD`;
  const [year, month, dayOfMonth] = [Number(day[1]), Number(day[2]), Number(day[3])];
  const clock = parseTime12h(time);
  if (!clock) return `time "${time}" is not a 12-hour time such as 7:05 PM`;
  if (zone === "utc") {
    const ms = Date.UTC(year, month - 1, dayOfMonth, clock.hours, clock.minutes, clock.seconds);
    const check = new Date(ms);
    if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== dayOfMonth) {
      return `date "${date}" does not exist`;
    }
    return ms / 1000;
  }
  const local = new Date(year, month - 1, dayOfMonth, clock.hours, clock.minutes, clock.seconds);
  if (local.getMonth() !== month - 1 || local.getDate() !== dayOfMonth) {
    return `date "${date}" does not exist`;
  }
  if (local.getHours() !== clock.hours || local.getMinutes() !== clock.minutes) {
    return `${time} does not exist on ${date} in this time zone (daylight-saving change)`;
  }
  const seconds = local.getTime() / 1000;
  // The same wall time one hour later in real time: the clock was turned back.
  const hourLater = new Date((seconds + 3600) * 1000);
  if (hourLater.getHours() === clock.hours && hourLater.getMinutes() === clock.minutes && hourLater.getDate() === dayOfMonth) {
    return `${time} happens twice on ${date} in this time zone (daylight-saving change); use UTC`;
  }
  return seconds;
}

/** A custom range from the form's four fields, or the reason it is not one. */
export function customRange(
  startDate: string,
  startTime: string,
  endDate: string,
  endTime: string,
  zone: Zone,
): TimeRange | string {
  const start = toEpochSeconds(startDate, startTime, zone);
  if (typeof start === "string") return `start: ${start}`;
  const end = toEpochSeconds(endDate, endTime, zone);
  if (typeof end === "string") return `end: ${end}`;
  if (end < start) return "the end is before the start";
  return { start, end };
}

/** The date (`YYYY-MM-DD`) and 12-hour time of epoch `seconds` in `zone`, for the form. */
export function splitEpoch(seconds: number, zone: Zone): { date: string; time: string } {
  const d = new Date(seconds * 1000);
  const utc = zone === "utc";
  const year = utc ? d.getUTCFullYear() : d.getFullYear();
  const month = (utc ? d.getUTCMonth() : d.getMonth()) + 1;
  const day = utc ? d.getUTCDate() : d.getDate();
  const clock = {
    hours: utc ? d.getUTCHours() : d.getHours(),
    minutes: utc ? d.getUTCMinutes() : d.getMinutes(),
    seconds: utc ? d.getUTCSeconds() : d.getSeconds(),
  };
  const pad = (n: number) => String(n).padStart(2, "0");
  return { date: `${year}-${pad(month)}-${pad(day)}`, time: formatTime12h(clock) };
}

/** `seconds` as a readable date and time in `zone` (`2026-03-04 7:05:00 PM UTC`). */
export function formatEpoch(seconds: number, zone: Zone): string {
  const { date, time } = splitEpoch(seconds, zone);
  return `${date} ${time}${zone === "utc" ? " UTC" : ""}`;
}

/** Bucket widths the charts use, in seconds, and their SQL interval. */
const BUCKETS: [number, string][] = [
  [1, "1 second"],
  [5, "5 seconds"],
  [10, "10 seconds"],
  [30, "30 seconds"],
  [60, "1 minute"],
  [300, "5 minutes"],
  [900, "15 minutes"],
  [3600, "1 hour"],
  [6 * 3600, "6 hours"],
  [86_400, "1 day"],
  [7 * 86_400, "7 days"],
];

/** The smallest bucket that draws `span` seconds in at most `maxBuckets` points. */
export function bucketFor(span: number, maxBuckets = 300): { seconds: number; interval: string } {
  for (const [seconds, interval] of BUCKETS) {
    if (span / seconds <= maxBuckets) return { seconds, interval };
  }
  const [seconds, interval] = BUCKETS[BUCKETS.length - 1];
  return { seconds, interval };
}
