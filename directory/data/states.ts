/**
 * The 51 jurisdictions of the directory (50 states + DC) and the per-state facts the sample data
 * needs: USPS code, name, a rough relative cost level, ZIP prefixes and telephone area codes.
 */

/** One US state or the District of Columbia. */
export interface UsState {
  /** USPS code, also GeoNames' admin1 code for the US (`TX`). */
  readonly code: string;
  /** Full name (`Texas`, `District of Columbia`). */
  readonly name: string;
  /**
   * Relative cost level of senior care (1 = national typical). A rough figure for the sample data
   * only, in the spirit of published cost-of-care surveys (dearer in the Northeast, the West Coast,
   * Alaska and Hawaii; cheaper in the South and the Plains), not a survey result.
   */
  readonly costIndex: number;
  /** Inclusive range of the state's 3-digit ZIP prefixes (the main block; enough for plausible sample ZIPs). */
  readonly zipPrefixes: readonly [number, number];
  /** Real area codes of the state: sample phones are `+1 <area> 555-01xx`, the fictional range. */
  readonly areaCodes: readonly number[];
}

/** The 50 states and DC, ordered by code. */
export const usStates: readonly UsState[] = [
  { code: "AK", name: "Alaska", costIndex: 1.4, zipPrefixes: [995, 999], areaCodes: [907] },
  { code: "AL", name: "Alabama", costIndex: 0.85, zipPrefixes: [350, 369], areaCodes: [205, 251, 256, 334, 938] },
  { code: "AR", name: "Arkansas", costIndex: 0.85, zipPrefixes: [716, 729], areaCodes: [479, 501, 870] },
  { code: "AZ", name: "Arizona", costIndex: 0.95, zipPrefixes: [850, 865], areaCodes: [480, 520, 602, 623, 928] },
  {
    code: "CA",
    name: "California",
    costIndex: 1.2,
    zipPrefixes: [900, 961],
    areaCodes: [
      209, 213, 310, 323, 408, 415, 510, 530, 559, 562, 619, 626, 650, 661, 707, 714, 760, 805, 818, 831, 858, 909, 916,
      925, 949, 951,
    ],
  },
  { code: "CO", name: "Colorado", costIndex: 1.1, zipPrefixes: [800, 816], areaCodes: [303, 719, 720, 970] },
  { code: "CT", name: "Connecticut", costIndex: 1.3, zipPrefixes: [60, 69], areaCodes: [203, 475, 860, 959] },
  { code: "DC", name: "District of Columbia", costIndex: 1.4, zipPrefixes: [200, 205], areaCodes: [202] },
  { code: "DE", name: "Delaware", costIndex: 1.2, zipPrefixes: [197, 199], areaCodes: [302] },
  {
    code: "FL",
    name: "Florida",
    costIndex: 0.95,
    zipPrefixes: [320, 349],
    areaCodes: [239, 305, 321, 352, 386, 407, 561, 727, 754, 772, 786, 813, 850, 863, 904, 941, 954],
  },
  {
    code: "GA",
    name: "Georgia",
    costIndex: 0.85,
    zipPrefixes: [300, 319],
    areaCodes: [229, 404, 470, 478, 678, 706, 762, 770, 912],
  },
  { code: "HI", name: "Hawaii", costIndex: 1.35, zipPrefixes: [967, 968], areaCodes: [808] },
  { code: "IA", name: "Iowa", costIndex: 0.95, zipPrefixes: [500, 528], areaCodes: [319, 515, 563, 641, 712] },
  { code: "ID", name: "Idaho", costIndex: 0.95, zipPrefixes: [832, 838], areaCodes: [208, 986] },
  {
    code: "IL",
    name: "Illinois",
    costIndex: 1.0,
    zipPrefixes: [600, 629],
    areaCodes: [217, 224, 309, 312, 331, 618, 630, 708, 773, 779, 815, 847, 872],
  },
  {
    code: "IN",
    name: "Indiana",
    costIndex: 0.95,
    zipPrefixes: [460, 479],
    areaCodes: [219, 260, 317, 463, 574, 765, 812, 930],
  },
  { code: "KS", name: "Kansas", costIndex: 0.95, zipPrefixes: [660, 679], areaCodes: [316, 620, 785, 913] },
  { code: "KY", name: "Kentucky", costIndex: 0.9, zipPrefixes: [400, 427], areaCodes: [270, 364, 502, 606, 859] },
  { code: "LA", name: "Louisiana", costIndex: 0.85, zipPrefixes: [700, 714], areaCodes: [225, 318, 337, 504, 985] },
  {
    code: "MA",
    name: "Massachusetts",
    costIndex: 1.35,
    zipPrefixes: [10, 27],
    areaCodes: [339, 351, 413, 508, 617, 774, 781, 857, 978],
  },
  { code: "MD", name: "Maryland", costIndex: 1.15, zipPrefixes: [206, 219], areaCodes: [240, 301, 410, 443, 667] },
  { code: "ME", name: "Maine", costIndex: 1.2, zipPrefixes: [39, 49], areaCodes: [207] },
  {
    code: "MI",
    name: "Michigan",
    costIndex: 1.0,
    zipPrefixes: [480, 499],
    areaCodes: [231, 248, 269, 313, 517, 586, 616, 734, 810, 906, 947, 989],
  },
  {
    code: "MN",
    name: "Minnesota",
    costIndex: 1.15,
    zipPrefixes: [550, 567],
    areaCodes: [218, 320, 507, 612, 651, 763, 952],
  },
  { code: "MO", name: "Missouri", costIndex: 0.85, zipPrefixes: [630, 658], areaCodes: [314, 417, 573, 636, 660, 816] },
  { code: "MS", name: "Mississippi", costIndex: 0.8, zipPrefixes: [386, 397], areaCodes: [228, 601, 662, 769] },
  { code: "MT", name: "Montana", costIndex: 1.0, zipPrefixes: [590, 599], areaCodes: [406] },
  {
    code: "NC",
    name: "North Carolina",
    costIndex: 0.95,
    zipPrefixes: [270, 289],
    areaCodes: [252, 336, 704, 743, 828, 910, 919, 980, 984],
  },
  { code: "ND", name: "North Dakota", costIndex: 0.95, zipPrefixes: [580, 588], areaCodes: [701] },
  { code: "NE", name: "Nebraska", costIndex: 0.95, zipPrefixes: [680, 693], areaCodes: [308, 402, 531] },
  { code: "NH", name: "New Hampshire", costIndex: 1.25, zipPrefixes: [30, 38], areaCodes: [603] },
  {
    code: "NJ",
    name: "New Jersey",
    costIndex: 1.3,
    zipPrefixes: [70, 89],
    areaCodes: [201, 551, 609, 640, 732, 848, 856, 862, 908, 973],
  },
  { code: "NM", name: "New Mexico", costIndex: 0.95, zipPrefixes: [870, 884], areaCodes: [505, 575] },
  { code: "NV", name: "Nevada", costIndex: 0.95, zipPrefixes: [889, 898], areaCodes: [702, 725, 775] },
  {
    code: "NY",
    name: "New York",
    costIndex: 1.2,
    zipPrefixes: [100, 149],
    areaCodes: [212, 315, 332, 347, 516, 518, 585, 607, 631, 646, 680, 716, 718, 845, 914, 917, 929, 934],
  },
  {
    code: "OH",
    name: "Ohio",
    costIndex: 1.0,
    zipPrefixes: [430, 459],
    areaCodes: [216, 220, 234, 330, 380, 419, 440, 513, 567, 614, 740, 937],
  },
  { code: "OK", name: "Oklahoma", costIndex: 0.85, zipPrefixes: [730, 749], areaCodes: [405, 539, 580, 918] },
  { code: "OR", name: "Oregon", costIndex: 1.15, zipPrefixes: [970, 979], areaCodes: [458, 503, 541, 971] },
  {
    code: "PA",
    name: "Pennsylvania",
    costIndex: 1.0,
    zipPrefixes: [150, 196],
    areaCodes: [215, 223, 267, 272, 412, 445, 484, 570, 610, 717, 724, 814, 878],
  },
  { code: "RI", name: "Rhode Island", costIndex: 1.25, zipPrefixes: [28, 29], areaCodes: [401] },
  { code: "SC", name: "South Carolina", costIndex: 0.9, zipPrefixes: [290, 299], areaCodes: [803, 839, 843, 854, 864] },
  { code: "SD", name: "South Dakota", costIndex: 0.9, zipPrefixes: [570, 577], areaCodes: [605] },
  {
    code: "TN",
    name: "Tennessee",
    costIndex: 0.9,
    zipPrefixes: [370, 385],
    areaCodes: [423, 615, 629, 731, 865, 901, 931],
  },
  {
    code: "TX",
    name: "Texas",
    costIndex: 0.9,
    zipPrefixes: [750, 799],
    areaCodes: [
      210, 214, 254, 281, 325, 346, 361, 409, 430, 432, 469, 512, 682, 713, 726, 737, 806, 817, 830, 832, 903, 915, 936,
      940, 956, 972, 979,
    ],
  },
  { code: "UT", name: "Utah", costIndex: 0.9, zipPrefixes: [840, 847], areaCodes: [385, 435, 801] },
  {
    code: "VA",
    name: "Virginia",
    costIndex: 1.05,
    zipPrefixes: [220, 246],
    areaCodes: [276, 434, 540, 571, 703, 757, 804],
  },
  { code: "VT", name: "Vermont", costIndex: 1.2, zipPrefixes: [50, 59], areaCodes: [802] },
  {
    code: "WA",
    name: "Washington",
    costIndex: 1.25,
    zipPrefixes: [980, 994],
    areaCodes: [206, 253, 360, 425, 509, 564],
  },
  {
    code: "WI",
    name: "Wisconsin",
    costIndex: 1.05,
    zipPrefixes: [530, 549],
    areaCodes: [262, 414, 534, 608, 715, 920],
  },
  { code: "WV", name: "West Virginia", costIndex: 0.9, zipPrefixes: [247, 268], areaCodes: [304, 681] },
  { code: "WY", name: "Wyoming", costIndex: 0.95, zipPrefixes: [820, 831], areaCodes: [307] },
];

const byCode = new Map(usStates.map((s) => [s.code, s]));

/** The state with USPS code `code`, or undefined for anything else (territories included). */
export function stateByCode(code: string): UsState | undefined {
  return byCode.get(code);
}
