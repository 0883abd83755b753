// The API reference page (/docs): Swagger UI from the service's own files, reading /docs.json.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,  // no third-party validator badge
    onComplete: () => { document.documentElement.dataset.ready = "true"; },  // for the end-to-end tests
  });
});
