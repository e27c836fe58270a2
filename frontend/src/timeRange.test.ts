// Node reads TZ when a Date first needs it; a zone with daylight saving makes the local-time
// cases meaningful whatever the machine's own zone is.
process.env.TZ = "America/New_York";

import { describe, expect, it } from "vitest";
import {
  bucketFor,
  customRange,
  formatTime12h,
  parseTime12h,
  presetRange,
  splitEpoch,
  toEpochSeconds,
} from "./timeRange";

const NOW = new Date(Date.UTC(2026, 2, 4, 12, 0, 0)); // 2026-03-04 12:00:00 UTC
const NOW_S = NOW.getTime() / 1000;

describe("presets", () => {
  it("end now and reach back their span", () => {
    expect(presetRange("hour", NOW)).toEqual({ start: NOW_S - 3600, end: NOW_S });
    expect(presetRange("day", NOW)).toEqual({ start: NOW_S - 86_400, end: NOW_S });
    expect(presetRange("week", NOW)).toEqual({ start: NOW_S - 604_800, end: NOW_S });
  });
  it("All is open at both ends, as the seed's 0", () => {
    expect(presetRange("all", NOW)).toEqual({ start: 0, end: 0 });
  });
  it("drop the sub-second part of now", () => {
    const range = presetRange("hour", new Date(NOW.getTime() + 999));
    expect(range.end).toBe(NOW_S);
  });
});

describe("12-hour time input", () => {
  it("reads AM and PM, with or without seconds and spaces", () => {
    expect(parseTime12h("7:05 PM")).toEqual({ hours: 19, minutes: 5, seconds: 0 });
    expect(parseTime12h("07:05:30 am")).toEqual({ hours: 7, minutes: 5, seconds: 30 });
    expect(parseTime12h("11:59:59PM")).toEqual({ hours: 23, minutes: 59, seconds: 59 });
    expect(parseTime12h(" 9:00 p.m. ")).toEqual({ hours: 21, minutes: 0, seconds: 0 });
  });
  it("12 AM is midnight and 12 PM is noon", () => {
    expect(parseTime12h("12:00 AM")).toEqual({ hours: 0, minutes: 0, seconds: 0 });
    expect(parseTime12h("12:30 PM")).toEqual({ hours: 12, minutes: 30, seconds: 0 });
  });
  it("refuses 24-hour times, missing AM/PM and out-of-range fields", () => {
    for (const bad of ["13:00 PM", "0:30 AM", "19:05", "7:60 PM", "7:05:60 PM", "7 PM", "", "7:5 PM", "noon"]) {
      expect(parseTime12h(bad), bad).toBeNull();
    }
  });
  it("formats back to what it reads", () => {
    for (const hours of [0, 1, 11, 12, 13, 23]) {
      const time = { hours, minutes: 7, seconds: 9 };
      expect(parseTime12h(formatTime12h(time))).toEqual(time);
    }
    expect(formatTime12h({ hours: 0, minutes: 0, seconds: 0 })).toBe("12:00:00 AM");
    expect(formatTime12h({ hours: 12, minutes: 0, seconds: 0 })).toBe("12:00:00 PM");
  });
});

describe("time zones", () => {
  it("UTC input is taken as UTC", () => {
    expect(toEpochSeconds("2026-03-04", "12:00 PM", "utc")).toBe(NOW_S);
  });
  it("local input follows the zone's offset, winter and summer", () => {
    // New York is UTC-5 in March before the change, UTC-4 in July.
    expect(toEpochSeconds("2026-03-04", "7:00 AM", "local")).toBe(NOW_S);
    expect(toEpochSeconds("2026-07-04", "8:00 AM", "local")).toBe(Date.UTC(2026, 6, 4, 12) / 1000);
  });
  it("a local time skipped by the spring change is an error, not moved", () => {
    // 2026-03-08: clocks go from 2:00 AM straight to 3:00 AM.
    expect(toEpochSeconds("2026-03-08", "2:30 AM", "local")).toMatch(/does not exist/);
    expect(toEpochSeconds("2026-03-08", "2:30 AM", "utc")).toBe(Date.UTC(2026, 2, 8, 2, 30) / 1000);
  });
  it("a local time repeated by the autumn change is an error", () => {
    // 2026-11-01: 1:30 AM happens twice.
    expect(toEpochSeconds("2026-11-01", "1:30 AM", "local")).toMatch(/twice/);
    expect(typeof toEpochSeconds("2026-11-01", "2:30 AM", "local")).toBe("number");
  });
  it("refuses dates that do not exist", () => {
    expect(toEpochSeconds("2026-02-30", "1:00 AM", "utc")).toMatch(/does not exist/);
    expect(toEpochSeconds("2026-02-30", "1:00 AM", "local")).toMatch(/does not exist/);
    expect(toEpochSeconds("04/03/2026", "1:00 AM", "utc")).toMatch(/YYYY-MM-DD/);
  });
  it("splits an instant back into the form's fields in either zone", () => {
    expect(splitEpoch(NOW_S, "utc")).toEqual({ date: "2026-03-04", time: "12:00:00 PM" });
    expect(splitEpoch(NOW_S, "local")).toEqual({ date: "2026-03-04", time: "7:00:00 AM" });
  });
});

describe("custom ranges", () => {
  it("are inclusive epoch seconds", () => {
    expect(customRange("2026-03-04", "11:00 AM", "2026-03-04", "12:00 PM", "utc")).toEqual({
      start: NOW_S - 3600,
      end: NOW_S,
    });
  });
  it("say which end is wrong, and refuse an end before the start", () => {
    expect(customRange("2026-03-04", "25:00 AM", "2026-03-04", "12:00 PM", "utc")).toMatch(/^start:/);
    expect(customRange("2026-03-04", "11:00 AM", "x", "12:00 PM", "utc")).toMatch(/^end:/);
    expect(customRange("2026-03-04", "1:00 PM", "2026-03-04", "12:00 PM", "utc")).toMatch(/before/);
  });
});

describe("chart buckets", () => {
  it("keep a range within the bucket budget", () => {
    expect(bucketFor(3600)).toEqual({ seconds: 30, interval: "30 seconds" });
    expect(bucketFor(86_400)).toEqual({ seconds: 300, interval: "5 minutes" });
    expect(bucketFor(604_800)).toEqual({ seconds: 3600, interval: "1 hour" });
    expect(bucketFor(10)).toEqual({ seconds: 1, interval: "1 second" });
    expect(bucketFor(100 * 365 * 86_400).seconds).toBe(7 * 86_400);
  });
});
