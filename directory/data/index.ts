/**
 * The senior-living directory's data: 977 real US cities (GeoNames, CC BY 4.0) and 4,757
 * generated sample communities, and their storage in the technical schema.
 */
export {
  type CityNeighbour,
  type CityRecord,
  directoryCityCount,
  eligibleCities,
  type GeoNamesCity,
  geonamesCredit,
  geonamesCreditHtml,
  loadGeoNamesCities,
  nearestNeighbours,
  neighbourCount,
  perStateMinimum,
  type SelectCitiesOptions,
  selectCities,
} from "./cities.ts";
export {
  allocateCommunities,
  type CapacityUnit,
  type CarePrice,
  type CareType,
  type CommunityKind,
  type CommunityRecord,
  careTypeLabels,
  careTypes,
  communityKinds,
  defaultDirectorySeed,
  directoryCommunityCount,
  type GenerateCommunitiesOptions,
  generateCommunities,
  maxCommunityDistanceKm,
} from "./communities.ts";
export {
  type CreateDirectoryDataOptions,
  canonicalJson,
  contentHash,
  createDirectoryData,
  type DirectoryData,
  hashDirectory,
} from "./dataset.ts";
export {
  DirectoryCity,
  type DirectoryCityRow,
  DirectoryCommunity,
  type DirectoryCommunityRow,
  DirectoryPage,
  type DirectoryPageRow,
  directoryEntities,
} from "./entities.ts";
export { destination, haversineKm, type LatLon, roundTo } from "./geo.ts";
export { createRandom, type Random } from "./random.ts";
export { slugify } from "./slug.ts";
export { stateByCode, type UsState, usStates } from "./states.ts";
export { loadDirectory, type SeedCounts, type SeedResult, seedDirectory } from "./store.ts";
