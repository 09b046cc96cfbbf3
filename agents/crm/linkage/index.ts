/**
 * Probabilistic record linkage of contacts (Fellegi–Sunter), shared by the CRM's duplicate
 * detection and, later, its merges: normalisation, blocking, comparators, EM, clustering and
 * survivorship.
 */
export { type BlockingStats, forEachCandidatePair, TooManyCandidatePairsError } from "./blocking.ts";
export { defaultSimilarityLevels, FieldComparison } from "./compare.ts";
export {
  defaultBlockingRules,
  defaultComparators,
  emOptions,
  maxBlockSize,
  maxCandidatePairs,
  maxPopulation,
} from "./defaults.ts";
export { type EmEstimate, type EmOptions, estimateEm, Level, type LevelCode, levelWeights, runEm } from "./em.ts";
export {
  type LinkageConfig,
  type LinkageResult,
  type LinkedPair,
  linkRecords,
  type PairClass,
} from "./link.ts";
export {
  displayValue,
  emailDomain,
  fieldLabel,
  foldText,
  normalizedValue,
  normalizeEmail,
  normalizePhone,
  normalizePostalCode,
  standardGivenName,
} from "./normalize.ts";
export { jaro, jaroWinkler, metaphoneCodes } from "./strings.ts";
export { derivedFields, type Golden, goldenRecord, survivorOf } from "./survivorship.ts";
export {
  pairKey,
  type SyntheticOptions,
  type SyntheticPopulation,
  seededRandom,
  syntheticPopulation,
} from "./synthetic.ts";
export { UnionFind } from "./union-find.ts";
