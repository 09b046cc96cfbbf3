/** Great-circle helpers on a spherical Earth (mean radius), plenty for "within a few km". */

/** Mean Earth radius in km (IUGG). */
const earthRadiusKm = 6371.0088;
const rad = Math.PI / 180;

/** A point in decimal degrees (WGS 84). */
export interface LatLon {
  /** Latitude, degrees north. */
  readonly latitude: number;
  /** Longitude, degrees east. */
  readonly longitude: number;
}

/** Haversine distance between two points, in km. */
export function haversineKm(a: LatLon, b: LatLon): number {
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * earthRadiusKm * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The point `distanceKm` from `from` on initial bearing `bearingDeg` (clockwise from north). */
export function destination(from: LatLon, distanceKm: number, bearingDeg: number): LatLon {
  const d = distanceKm / earthRadiusKm;
  const brg = bearingDeg * rad;
  const lat1 = from.latitude * rad;
  const lon1 = from.longitude * rad;
  const lat2 = Math.asin(Math.sin(lat1) * Math.cos(d) + Math.cos(lat1) * Math.sin(d) * Math.cos(brg));
  const lon2 =
    lon1 + Math.atan2(Math.sin(brg) * Math.sin(d) * Math.cos(lat1), Math.cos(d) - Math.sin(lat1) * Math.sin(lat2));
  // Normalise the longitude to [-180, 180).
  const lon = ((((lon2 / rad + 540) % 360) + 360) % 360) - 180;
  return { latitude: lat2 / rad, longitude: lon };
}

/** `value` rounded to `digits` decimals (5 decimals of a degree ≈ 1 m). */
export function roundTo(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
