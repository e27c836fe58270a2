/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The node serves `dist/` at `/` (embedded in the binary); `npm run dev` proxies the API to
// a node on localhost:8080.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/query": "http://127.0.0.1:8080",
      "/metrics": "http://127.0.0.1:8080",
      "/ws": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
