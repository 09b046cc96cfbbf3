/**
 * The contract's defaults for duplicate detection: what "empty" means for comparators, blocking
 * rules and EM settings, and the bounds of the work.
 */
import { create } from "@bufbuild/protobuf";
import {
  BlockingMethod,
  type BlockingRule,
  BlockingRuleSchema,
  ComparatorKind,
  ContactField,
  type FieldComparator,
  FieldComparatorSchema,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import type { EmOptions } from "./em.ts";

const field = (f: ContactField) => ({ ref: { case: "contactField" as const, value: f } });

/** Given and family name by Jaro–Winkler; email, phone and postal code exact. */
export function defaultComparators(): FieldComparator[] {
  return [
    create(FieldComparatorSchema, { field: field(ContactField.GIVEN_NAME), kind: ComparatorKind.JARO_WINKLER }),
    create(FieldComparatorSchema, { field: field(ContactField.FAMILY_NAME), kind: ComparatorKind.JARO_WINKLER }),
    create(FieldComparatorSchema, { field: field(ContactField.EMAIL), kind: ComparatorKind.EXACT }),
    create(FieldComparatorSchema, { field: field(ContactField.PHONE), kind: ComparatorKind.EXACT }),
    create(FieldComparatorSchema, { field: field(ContactField.POSTAL_CODE), kind: ComparatorKind.EXACT }),
  ];
}

/** Double Metaphone of the family name, exact email, exact phone. */
export function defaultBlockingRules(): BlockingRule[] {
  return [
    create(BlockingRuleSchema, {
      parts: [{ field: field(ContactField.FAMILY_NAME), method: BlockingMethod.DOUBLE_METAPHONE }],
    }),
    create(BlockingRuleSchema, { parts: [{ field: field(ContactField.EMAIL), method: BlockingMethod.EXACT }] }),
    create(BlockingRuleSchema, { parts: [{ field: field(ContactField.PHONE), method: BlockingMethod.EXACT }] }),
  ];
}

/** EM settings of the contract's zero values: 100 iterations, tolerance 1e-6, starting share 0.1. */
export function emOptions(
  s: { maxIterations?: number; tolerance?: number; initialMatchProportion?: number } = {},
): EmOptions {
  return {
    maxIterations: s.maxIterations || 100,
    tolerance: s.tolerance || 1e-6,
    initialMatchProportion: s.initialMatchProportion || 0.1,
  };
}

/**
 * Keys shared by more records than this are skipped: such a key (a placeholder email, a family name
 * as common as Smith in millions) identifies nobody and would cost millions of comparisons.
 */
export const maxBlockSize = 2_000;

/** Candidate pairs one call may compare (12 bytes each are kept: 120 MB at most). */
export const maxCandidatePairs = 10_000_000;

/** Most contacts one call examines, inline or stored (the contract's inline limit). */
export const maxPopulation = 100_000;
