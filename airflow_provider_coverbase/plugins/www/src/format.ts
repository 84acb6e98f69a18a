/** Times and durations as people read them. All inputs are Unix seconds. */

export const duration = (seconds: number | null | undefined): string => {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${s % 60}s`;
  return `${s}s`;
};

export const when = (unix: number | null | undefined): string => {
  if (unix === null || unix === undefined) return "–";
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
};

export const ago = (unix: number | null | undefined, now: number): string =>
  unix === null || unix === undefined ? "–" : `${duration(now - unix)} ago`;

export const statusPalette = (status: string): string =>
  ({ completed: "green", failed: "red", cancelled: "orange", running: "blue", pending: "gray", paused: "yellow" })[status] ??
  "gray";

/** ``MM-DD HH:MM`` in UTC, for narrow table cells. */
export const short = (unix: number | null | undefined): string =>
  unix === null || unix === undefined ? "–" : new Date(unix * 1000).toISOString().slice(5, 16).replace("T", " ");
