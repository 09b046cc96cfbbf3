/**
 * Checks of a scoring model beyond its protovalidate rules (which already refuse unknown enum
 * values, duplicate rule ids, operand counts that do not fit the operator and thresholds out of
 * order): rule trees no deeper than 16 levels, and comparisons whose operator and operand types
 * fit the standard field they read (no text operator on a time field, no time operand for a text
 * field, lifecycle stages that exist, durations only for WITHIN_LAST). Each failure names the field
 * path, as protovalidate does.
 */

import {
  type AttributeValue,
  ComparisonOperator,
  type Condition,
  ContactField,
  LifecycleStageSchema,
  type ScoringModel,
} from "../../../gen/mesh/crm/v1/crm_service_pb.ts";
import { InvalidInputError } from "../../../lib/errors/index.ts";
import { forEachLeaf, maxConditionDepth, refuseSegmentOnlyNode } from "../conditions.ts";

const timeFields = new Set<ContactField>([ContactField.CREATED_AT, ContactField.UPDATED_AT]);
const textOperators = new Set<ComparisonOperator>([
  ComparisonOperator.CONTAINS,
  ComparisonOperator.NOT_CONTAINS,
  ComparisonOperator.STARTS_WITH,
  ComparisonOperator.ENDS_WITH,
]);

function isTimeOperand(v: AttributeValue): boolean {
  return v.kind.case === "timestampValue" || (v.kind.case === "stringValue" && !Number.isNaN(Date.parse(v.kind.value)));
}

/** Checks one leaf of a fit rule's tree (`forEachLeaf` walks the groups and limits the depth). */
function checkLeaf(leaf: Condition, path: string): void {
  refuseSegmentOnlyNode(leaf, path, "fit rules");
  const node = leaf.node;
  if (node.case !== "field") return;
  const cmp = node.value;
  const op = cmp.comparison;
  const ref = cmp.field?.ref;
  const at = `${path}.field`;
  cmp.values.forEach((v, i) => {
    if (v.kind.case === "durationValue" && op !== ComparisonOperator.WITHIN_LAST) {
      throw new InvalidInputError(`${at}.values[${i}]`, "a duration operand is only valid for WITHIN_LAST");
    }
  });
  if (ref?.case !== "contactField") return;
  const field = ref.value;
  if (timeFields.has(field)) {
    if (textOperators.has(op)) {
      throw new InvalidInputError(`${at}.comparison`, "a text operator cannot compare a time field");
    }
    if (op === ComparisonOperator.WITHIN_LAST) return;
    cmp.values.forEach((v, i) => {
      if (!isTimeOperand(v)) throw new InvalidInputError(`${at}.values[${i}]`, "must be a timestamp for a time field");
    });
    return;
  }
  if (op === ComparisonOperator.WITHIN_LAST) {
    throw new InvalidInputError(`${at}.comparison`, "WITHIN_LAST needs a time field");
  }
  cmp.values.forEach((v, i) => {
    if (v.kind.case === "timestampValue") {
      throw new InvalidInputError(`${at}.values[${i}]`, "a timestamp cannot be compared with a text field");
    }
    if (field === ContactField.LIFECYCLE_STAGE) {
      const name = v.kind.case === "stringValue" ? v.kind.value.toUpperCase() : "";
      const full = name.startsWith("LIFECYCLE_STAGE_") ? name : `LIFECYCLE_STAGE_${name}`;
      if (!LifecycleStageSchema.values.some((s) => s.name === full && s.number !== 0)) {
        throw new InvalidInputError(`${at}.values[${i}]`, "is not a lifecycle stage");
      }
    }
  });
}

/**
 * Checks a scoring model at `path` beyond its contract (check the request's contract first with
 * `checkContract`); INVALID_ARGUMENT naming the first fault.
 */
export function checkScoringModel(model: ScoringModel | undefined, path = "model"): ScoringModel {
  if (model === undefined) throw new InvalidInputError(path, "is required");
  model.fitRules.forEach((r, i) => {
    if (r.condition !== undefined) {
      forEachLeaf(r.condition, `${path}.fit_rules[${i}].condition`, checkLeaf, { maxDepth: maxConditionDepth });
    }
  });
  return model;
}
