/** URL slugs for cities and communities. */

/**
 * Lower-case ASCII words joined by hyphens: accents are dropped (`Cañon City` → `canon-city`),
 * apostrophes and dots vanish (`Coeur d'Alene` → `coeur-dalene`, `D.C.` → `dc`), `&` reads "and",
 * anything else separates words.
 */
export function slugify(text: string): string {
  return text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/&/g, " and ")
    .replace(/['’.]/g, "")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}
