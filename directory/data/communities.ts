/**
 * The directory's 4,757 communities: SAMPLE DATA, generated deterministically from a seed. Names,
 * street addresses, ratings and prices are invented; phones use the fictional 555-0100…555-0199
 * lines of real area codes; coordinates fall within `maxCommunityDistanceKm` of a real city.
 *
 * Allocation: every city gets one community, and the other 3,780 are shared in proportion to the
 * square root of population (largest-remainder rounding, ties by city rank), so big cities get more
 * without drowning the small ones (New York City gets 34; the smallest cities get 2).
 *
 * Each city draws from its own random stream (`<seed>/<city id>`), so a city's communities do not
 * depend on the other cities — except the phone lines, which are handed out per state in city
 * order so that no two communities share a number while the state's area codes have free lines.
 */
import type { CityRecord } from "./cities.ts";
import { destination, roundTo } from "./geo.ts";
import { createRandom, type Random } from "./random.ts";
import { slugify } from "./slug.ts";
import { stateByCode, type UsState } from "./states.ts";

/** Number of communities in the directory. */
export const directoryCommunityCount = 4757;
/** Seed of the published sample data. */
export const defaultDirectorySeed = "marketing-mesh/directory/v1";
/** Every community lies within this distance of its city's GeoNames point. */
export const maxCommunityDistanceKm = 6;
/** Year the sample data is generated as of (no community opens later). */
const asOfYear = 2024;

/** Kinds of care a community offers. */
export const careTypes = [
  "independent-living",
  "assisted-living",
  "memory-care",
  "skilled-nursing",
  "respite-care",
  "home-care",
] as const;
/** A kind of care. */
export type CareType = (typeof careTypes)[number];

/** Display names of the care types. */
export const careTypeLabels: Record<CareType, string> = {
  "independent-living": "Independent living",
  "assisted-living": "Assisted living",
  "memory-care": "Memory care",
  "skilled-nursing": "Skilled nursing",
  "respite-care": "Respite care",
  "home-care": "Home care",
};

/**
 * Typical national monthly cost ranges in USD (state cost index 1, a mid-size city): of the order of
 * published cost-of-care surveys for 2023–24. Respite care is a 30-day-equivalent rate; home care is
 * part-time to about 44 hours a week of a home health aide.
 */
const basePrices: Record<CareType, readonly [number, number]> = {
  "independent-living": [2400, 4600],
  "assisted-living": [4000, 6800],
  "memory-care": [5600, 9000],
  "skilled-nursing": [8200, 11800],
  "respite-care": [4200, 7600],
  "home-care": [2600, 6400],
};

/** What a community is, which drives its care mix, size and age. */
export const communityKinds = [
  "assisted-living",
  "independent-living",
  "memory-care",
  "continuing-care",
  "nursing-home",
  "home-care-agency",
] as const;
/** A kind of community. */
export type CommunityKind = (typeof communityKinds)[number];

/** What a capacity counts: apartments, licensed beds, or clients of a home-care agency. */
export type CapacityUnit = "units" | "beds" | "clients";

interface KindProfile {
  readonly weight: number;
  readonly label: string;
  /** Name suffixes. */
  readonly suffixes: readonly string[];
  /** Care always offered. */
  readonly core: readonly CareType[];
  /** Care sometimes offered, with its probability. */
  readonly optional: readonly (readonly [CareType, number])[];
  readonly capacity: readonly [number, number];
  readonly unit: CapacityUnit;
  readonly opened: readonly [number, number];
}

const kinds: Record<CommunityKind, KindProfile> = {
  "assisted-living": {
    weight: 34,
    label: "assisted living community",
    suffixes: ["Assisted Living", "Senior Living", "Assisted Living Residence", "Senior Residences"],
    core: ["assisted-living"],
    optional: [
      ["memory-care", 0.45],
      ["respite-care", 0.4],
      ["independent-living", 0.15],
    ],
    capacity: [36, 160],
    unit: "units",
    opened: [1988, asOfYear],
  },
  "independent-living": {
    weight: 18,
    label: "independent living community",
    suffixes: ["Retirement Community", "Senior Apartments", "Active Living", "Senior Living"],
    core: ["independent-living"],
    optional: [
      ["assisted-living", 0.4],
      ["respite-care", 0.15],
    ],
    capacity: [80, 320],
    unit: "units",
    opened: [1972, asOfYear],
  },
  "memory-care": {
    weight: 12,
    label: "memory care community",
    suffixes: ["Memory Care", "Memory Care Residence", "Alzheimer's Care"],
    core: ["memory-care"],
    optional: [
      ["respite-care", 0.5],
      ["assisted-living", 0.3],
    ],
    capacity: [20, 72],
    unit: "units",
    opened: [1996, asOfYear],
  },
  "continuing-care": {
    weight: 10,
    label: "continuing care retirement community",
    suffixes: ["Life Plan Community", "Retirement Community", "Senior Living Campus"],
    core: ["independent-living", "assisted-living", "memory-care", "skilled-nursing"],
    optional: [["respite-care", 0.6]],
    capacity: [150, 600],
    unit: "units",
    opened: [1962, 2020],
  },
  "nursing-home": {
    weight: 16,
    label: "skilled nursing facility",
    suffixes: ["Health and Rehabilitation", "Nursing and Rehabilitation Center", "Care Center", "Skilled Nursing"],
    core: ["skilled-nursing"],
    optional: [
      ["respite-care", 0.6],
      ["memory-care", 0.3],
    ],
    capacity: [60, 180],
    unit: "beds",
    opened: [1958, 2016],
  },
  "home-care-agency": {
    weight: 10,
    label: "home care agency",
    suffixes: ["Home Care", "Home Care Services", "In-Home Care"],
    core: ["home-care"],
    optional: [["respite-care", 0.35]],
    capacity: [25, 250],
    unit: "clients",
    opened: [1990, asOfYear],
  },
};

const nameFirst = [
  "Maple",
  "Willow",
  "Cedar",
  "Magnolia",
  "Heritage",
  "Harbor",
  "Meadow",
  "Sunrise",
  "Brookside",
  "Silver",
  "Golden",
  "Aspen",
  "Juniper",
  "Laurel",
  "Evergreen",
  "Stonebridge",
  "Bayview",
  "Cypress",
  "Clearwater",
  "Hawthorn",
  "Linden",
  "Briar",
  "Amber",
  "Summit",
  "Riverbend",
  "Lakeshore",
  "Chestnut",
  "Dogwood",
  "Foxglove",
  "Sycamore",
  "Whispering",
  "Autumn",
  "Prairie",
  "Bluebell",
  "Windsor",
  "Crescent",
  "Wren",
  "Heron",
  "Bellwood",
  "Orchard",
] as const;
const nameSecond = [
  "Grove",
  "Ridge",
  "Creek",
  "Park",
  "Gardens",
  "Terrace",
  "Commons",
  "Springs",
  "Landing",
  "Pointe",
  "Hills",
  "Place",
  "Court",
  "Crossing",
  "Village",
  "Glen",
  "Trace",
  "Manor",
  "Oaks",
  "Pines",
  "Vista",
  "Haven",
] as const;
const streetFirst = [
  "Quail",
  "Elm",
  "Birch",
  "Hickory",
  "Larkspur",
  "Sparrow",
  "Cardinal",
  "Bluebird",
  "Mockingbird",
  "Poplar",
  "Walnut",
  "Magnolia",
  "Juniper",
  "Cottonwood",
  "Sagebrush",
  "Thistle",
  "Primrose",
  "Sunflower",
  "Holly",
  "Alder",
  "Harvest",
  "Meadowlark",
  "Wildflower",
  "Chapel",
  "Mill",
  "Orchard",
  "Fairview",
  "Pleasant",
  "Spring",
  "Garden",
] as const;
const streetSecond = ["Hollow", "Run", "Bend", "Hill", "Field", "Brook", "Wood", "Stone", "Ridge", "Glen", ""] as const;
const streetTypes = [
  "Lane",
  "Way",
  "Drive",
  "Court",
  "Road",
  "Avenue",
  "Boulevard",
  "Parkway",
  "Circle",
  "Trail",
] as const;

const residentialAmenities = [
  "Restaurant-style dining",
  "Fitness center",
  "Salon and barber",
  "Scheduled transportation",
  "Library",
  "Chapel",
  "Garden and walking paths",
  "Housekeeping",
  "Pet friendly",
  "Wi-Fi throughout",
  "Movie theater",
  "Indoor pool",
  "Art studio",
  "24-hour staff",
  "Emergency call system",
  "On-site physical therapy",
  "Laundry service",
  "Private dining room",
  "Outdoor patio",
  "Activities calendar",
] as const;
const memoryAmenities = ["Secured courtyard", "Sensory room", "Music therapy", "Wander-management system"] as const;
const homeCareServices = [
  "Background-checked caregivers",
  "24/7 phone line",
  "Medication reminders",
  "Meal preparation",
  "Transportation to appointments",
  "Companionship visits",
  "Light housekeeping",
  "Personal care",
  "Overnight care",
  "Care plan reviews",
] as const;

/** One care type's monthly price range. */
export interface CarePrice {
  readonly careType: CareType;
  /** Lowest monthly price, USD. */
  readonly minMonthlyUsd: number;
  /** Highest monthly price, USD (≥ min). */
  readonly maxMonthlyUsd: number;
}

/** A senior-living community of the sample directory. */
export interface CommunityRecord {
  /** Stable id and URL slug: `<name>-<city id>`. */
  readonly id: string;
  /** Always true: the record is generated sample data, not a real business. */
  readonly sample: true;
  /** Id of its city. */
  readonly cityId: string;
  /** Invented name. */
  readonly name: string;
  readonly kind: CommunityKind;
  /** One-sentence description that says it is sample data. */
  readonly description: string;
  /** Invented street address. */
  readonly streetAddress: string;
  /** City name (as the city's GeoNames name). */
  readonly locality: string;
  /** USPS state code. */
  readonly stateCode: string;
  /** A 5-digit ZIP with one of the state's prefixes. */
  readonly postalCode: string;
  /** Degrees north. */
  readonly latitude: number;
  /** Degrees east. */
  readonly longitude: number;
  /** E.164, a fictional 555-01xx line of one of the state's area codes. */
  readonly phone: string;
  /** Care offered, in the order of {@link careTypes}. */
  readonly careTypes: readonly CareType[];
  /** One price range per care type, same order. */
  readonly prices: readonly CarePrice[];
  readonly capacity: number;
  readonly capacityUnit: CapacityUnit;
  readonly yearOpened: number;
  readonly amenities: readonly string[];
  /** Average rating 1–5 (one decimal), or null when unrated. */
  readonly rating: number | null;
  /** Number of ratings (0 when unrated). */
  readonly reviewCount: number;
}

/** Options of {@link generateCommunities}. */
export interface GenerateCommunitiesOptions {
  /** Seed (default {@link defaultDirectorySeed}). */
  seed?: string;
  /** Number of communities (default 4,757). */
  total?: number;
}

/**
 * Communities per city: one each, plus `total − cities` shared in proportion to √population by
 * largest remainder (ties by rank). Same order as `cities`.
 */
export function allocateCommunities(cities: readonly CityRecord[], total: number): number[] {
  if (total < cities.length) throw new Error(`${total} communities cannot cover ${cities.length} cities`);
  const extra = total - cities.length;
  const weights = cities.map((c) => Math.sqrt(c.population));
  const sum = weights.reduce((a, b) => a + b, 0);
  const quotas = weights.map((w) => (extra * w) / sum);
  const counts = quotas.map((q) => 1 + Math.floor(q));
  let left = total - counts.reduce((a, b) => a + b, 0);
  const order = quotas
    .map((q, i) => ({ i, r: q - Math.floor(q), rank: cities[i]?.rank ?? i }))
    .sort((a, b) => b.r - a.r || a.rank - b.rank);
  for (const { i } of order) {
    if (left === 0) break;
    counts[i] = (counts[i] ?? 0) + 1;
    left--;
  }
  return counts;
}

/** Hands out fictional phone lines per state, unique while the state's area codes have free lines. */
function createPhoneBook(): (state: UsState, preferredArea: number, random: Random) => string {
  const used = new Map<number, Set<number>>();
  return (state, preferredArea, random) => {
    const areas = [preferredArea, ...state.areaCodes.filter((a) => a !== preferredArea)];
    for (const area of areas) {
      let lines = used.get(area);
      if (lines === undefined) {
        lines = new Set();
        used.set(area, lines);
      }
      if (lines.size >= 100) continue;
      const free: number[] = [];
      for (let l = 0; l < 100; l++) if (!lines.has(l)) free.push(l);
      const line = random.pick(free);
      lines.add(line);
      return `+1${area}5550${(100 + line).toString()}`;
    }
    return `+1${preferredArea}5550${(100 + random.int(0, 99)).toString()}`;
  };
}

/** `a`, `a and b`, `a, b and c`. */
function listText(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** Monthly price range of one care type at a community. */
function priceFor(careType: CareType, level: number, random: Random): CarePrice {
  const [lo, hi] = basePrices[careType];
  const round50 = (v: number) => Math.round(v / 50) * 50;
  const minMonthlyUsd = round50(lo * level * random.float(0.92, 1.08));
  const maxMonthlyUsd = Math.max(minMonthlyUsd + 300, round50(hi * level * random.float(0.92, 1.08)));
  return { careType, minMonthlyUsd, maxMonthlyUsd };
}

/** A rating around 4.2 (sum of three uniforms), or null for about one community in six. */
function ratingFor(random: Random): { rating: number | null; reviewCount: number } {
  if (random.chance(0.17)) return { rating: null, reviewCount: 0 };
  const spread = (random.next() + random.next() + random.next()) / 3 - 0.5;
  const rating = roundTo(Math.min(5, Math.max(2.5, 4.2 + spread * 2.4)), 1);
  return { rating, reviewCount: random.int(3, 240) };
}

/** Generates the communities of `cities` (SAMPLE DATA) in city order, by id within a city. Same seed, same output. */
export function generateCommunities(
  cities: readonly CityRecord[],
  options: GenerateCommunitiesOptions = {},
): CommunityRecord[] {
  const seed = options.seed ?? defaultDirectorySeed;
  const counts = allocateCommunities(cities, options.total ?? directoryCommunityCount);
  const phone = createPhoneBook();
  const kindWeights = communityKinds.map((k) => [k, kinds[k].weight] as const);
  const out: CommunityRecord[] = [];
  cities.forEach((city, ci) => {
    const state = stateByCode(city.stateCode);
    if (state === undefined) throw new Error(`unknown state ${city.stateCode}`);
    const random = createRandom(`${seed}/${city.id}`);
    const cityArea = random.pick(state.areaCodes);
    const zipPrefix = random.int(state.zipPrefixes[0], state.zipPrefixes[1]);
    // Bigger cities cost a little more: about +5 % per tenfold population over 50,000.
    const cityLevel = Math.min(1.12, Math.max(0.95, 1 + 0.05 * Math.log10(city.population / 50_000)));
    const ids = new Set<string>();
    const batch: CommunityRecord[] = [];
    for (let n = 0; n < (counts[ci] ?? 0); n++) {
      const kind = random.weighted(kindWeights);
      const profile = kinds[kind];
      const base = random.chance(0.2)
        ? `${city.name.replace(/,.*$/, "")} ${random.pick(nameSecond)}`
        : random.chance(0.5)
          ? `${random.pick(nameFirst)} ${random.pick(nameSecond)}`
          : random.pick(nameFirst);
      const name = `${base} ${random.pick(profile.suffixes)}`;
      let id = `${slugify(name)}-${city.id}`;
      for (let k = 2; ids.has(id); k++) id = `${slugify(name)}-${k}-${city.id}`;
      ids.add(id);
      const offered = new Set<CareType>(profile.core);
      for (const [care, p] of profile.optional) if (random.chance(p)) offered.add(care);
      const careList = careTypes.filter((c) => offered.has(c));
      const level = state.costIndex * cityLevel * random.float(0.88, 1.22);
      const prices = careList.map((c) => priceFor(c, level, random));
      const second = random.pick(streetSecond);
      const streetAddress = `${random.int(100, 9899)} ${random.pick(streetFirst)}${second === "" ? "" : ` ${second}`} ${random.pick(streetTypes)}`;
      // Uniform over the disc between 0.3 km and the bound (minus a margin for rounding).
      const r = Math.sqrt(random.float(0.3 ** 2, (maxCommunityDistanceKm - 0.1) ** 2));
      const at = destination(city, r, random.float(0, 360));
      const pool: readonly string[] =
        kind === "home-care-agency"
          ? homeCareServices
          : offered.has("memory-care")
            ? [...residentialAmenities, ...memoryAmenities]
            : residentialAmenities;
      const amenities = random.sample(pool, random.int(4, 9));
      const { rating, reviewCount } = ratingFor(random);
      const careText = listText(careList.map((c) => careTypeLabels[c].toLowerCase()));
      const article = /^[aeiou]/.test(profile.label) ? "an" : "a";
      batch.push({
        id,
        sample: true,
        cityId: city.id,
        name,
        kind,
        description: `Sample listing (fictional, for demonstration): ${article} ${profile.label} in ${city.name}, ${state.code}, offering ${careText}.`,
        streetAddress,
        locality: city.name,
        stateCode: state.code,
        postalCode: `${zipPrefix.toString().padStart(3, "0")}${random.int(1, 99).toString().padStart(2, "0")}`,
        latitude: roundTo(at.latitude, 5),
        longitude: roundTo(at.longitude, 5),
        phone: phone(state, cityArea, random),
        careTypes: careList,
        prices,
        capacity: random.int(profile.capacity[0], profile.capacity[1]),
        capacityUnit: profile.unit,
        yearOpened: random.int(profile.opened[0], profile.opened[1]),
        amenities,
        rating,
        reviewCount,
      });
    }
    // Listed by id within a city: the order the store reads them back in.
    out.push(...batch.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
  });
  return out;
}
