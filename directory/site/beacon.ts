/**
 * The page beacon, inlined at the end of every page (no third-party script, no cookies). Unless
 * the visitor sends Do Not Track or Global Privacy Control, it keeps a random visitor id in
 * localStorage, reports the page view with `navigator.sendBeacon` (event id for dedup), and fills
 * the enquiry form's hidden `visitor_id` / `event_id` so the enquiry is stitched to earlier views.
 * The form itself is a plain POST and works without it. Endpoint: the body's `data-beacon`
 * attribute, else `/v1/events` on the same origin.
 */
const source = `(function(){
var n=navigator,d=document,b=d.body;
if(n.doNotTrack==="1"||window.doNotTrack==="1"||n.globalPrivacyControl===true)return;
function id(){return (crypto.randomUUID?crypto.randomUUID():Date.now().toString(36)+Math.random().toString(36).slice(2));}
var v;try{v=localStorage.getItem("mesh_vid");if(!v){v=id();localStorage.setItem("mesh_vid",v);}}catch(e){v=id();}
var url=b.getAttribute("data-beacon")||"/v1/events";
var ev={type:"page_view",event_id:id(),visitor_id:v,url:location.href,page:b.getAttribute("data-page")||"",city:b.getAttribute("data-city")||"",referrer:d.referrer||""};
try{n.sendBeacon?n.sendBeacon(url,new Blob([JSON.stringify(ev)],{type:"application/json"})):fetch(url,{method:"POST",body:JSON.stringify(ev),keepalive:true,headers:{"content-type":"application/json"}});}catch(e){}
var f=d.querySelector("form[data-enquiry]");
if(f)f.addEventListener("submit",function(){f.elements.visitor_id.value=v;f.elements.event_id.value=id();});
})();`;

/** The beacon, minified by hand (kept readable above). */
export const BEACON_SCRIPT = source.replace(/\n/g, "");
