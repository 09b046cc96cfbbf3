/**
 * The site's whole stylesheet, inlined in every page (it is the critical CSS: a few KB, no web
 * fonts, no background images). Mobile first; a two-column list from 760 px.
 */
export const STYLE = [
  ":root{--ink:#1d2a30;--muted:#52656d;--accent:#1f4e5f;--soft:#eef4f6;--line:#d5e1e5}",
  "*{box-sizing:border-box}",
  "body{margin:0;font:16px/1.55 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:#fff}",
  "a{color:var(--accent)}",
  ".top{background:var(--accent);padding:.75rem 1rem}.brand{color:#fff;font-weight:700;text-decoration:none}",
  "main{max-width:70rem;margin:0 auto;padding:1rem}",
  "h1{font-size:1.75rem;line-height:1.2;margin:.5rem 0 1rem}h2{font-size:1.3rem;margin:2rem 0 .75rem}h3{margin:0 0 .25rem;font-size:1.1rem}",
  ".crumbs{font-size:.9rem;color:var(--muted)}",
  ".stats{display:flex;flex-wrap:wrap;gap:.5rem;padding:0;list-style:none}",
  ".stats li{background:var(--soft);border-radius:.5rem;padding:.5rem .75rem}",
  ".filters{border:0;padding:0;margin:0 0 .75rem;display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}",
  ".filters legend{font-weight:600;margin-bottom:.25rem}",
  ".filterable>input{position:absolute;opacity:0;width:1px;height:1px}",
  ".filters label{border:1px solid var(--line);border-radius:1rem;padding:.3rem .8rem;cursor:pointer;font-size:.95rem}",
  ".list{list-style:none;padding:0;display:grid;gap:.75rem}",
  // Cards off screen are neither laid out nor painted until they come near (long city lists), and
  // their lazy images are not fetched during the page load.
  ".list>li{content-visibility:auto;contain-intrinsic-size:auto 18rem}",
  "@media(min-width:760px){.list{grid-template-columns:1fr 1fr}h1{font-size:2.1rem}}",
  ".c article{border:1px solid var(--line);border-radius:.75rem;padding:1rem;height:100%;display:flex;flex-direction:column}.c article>p:last-child{margin-top:auto;margin-bottom:0}",
  ".addr,.meta{color:var(--muted);margin:.25rem 0}",
  ".c .head{display:flex;gap:.75rem;justify-content:space-between;align-items:flex-start}",
  ".c .head img{flex:none;width:6rem;height:auto;border-radius:.5rem;background:var(--soft)}",
  "@media(min-width:480px){.c .head img{width:8rem}}",
  ".care span{display:inline-block;background:var(--soft);border-radius:1rem;padding:.1rem .6rem;margin:0 .3rem .3rem 0;font-size:.85rem}",
  ".prices{padding-left:1.1rem;margin:.25rem 0}",
  ".cta{display:inline-block;margin-top:.25rem;font-weight:600}",
  ".enquiry{background:var(--soft);border-radius:.75rem;padding:.25rem 1rem 1.25rem;margin-top:2rem;scroll-margin-top:1rem}",
  ".enquiry h2{margin-top:1rem}",
  ".enquiry form{display:grid;grid-template-columns:minmax(0,1fr);gap:.35rem;max-width:32rem}",
  ".enquiry input,.enquiry select,.enquiry textarea{font:inherit;padding:.55rem;border:1px solid #8aa0a8;border-radius:.4rem;background:#fff;max-width:100%}",
  ".enquiry button{font:inherit;font-weight:700;margin-top:.5rem;padding:.7rem;border:0;border-radius:.4rem;background:var(--accent);color:#fff;cursor:pointer}",
  ".near,.cities{padding-left:1.1rem}.cities{columns:16rem;column-gap:2.5rem}.cities li,.near li{padding:.3rem 0;break-inside:avoid}.cities span{color:var(--muted)}",
  ".foot{border-top:1px solid var(--line);margin-top:2rem;padding:1rem;color:var(--muted);font-size:.85rem;text-align:center}",
].join("");
