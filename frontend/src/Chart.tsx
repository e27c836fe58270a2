// A time-series chart on uPlot. `x` is epoch seconds; each series is aligned to it (null
// where it has no value). The chart is rebuilt when the set of series changes and only
// re-fed when the data changes, so a live chart stays cheap.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  show?: boolean;
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

export function colorFor(index: number): string {
  return COLORS[index % COLORS.length];
}

export function Chart({
  x,
  series,
  height = 300,
  utc = false,
  testId,
}: {
  x: number[];
  series: ChartSeries[];
  height?: number;
  utc?: boolean;
  testId?: string;
}) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join("\u0000") + (utc ? "|utc" : "");

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: element.clientWidth || 800,
      height,
      tzDate: utc ? (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC") : undefined,
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: colorFor(i),
          width: 1.5,
          spanGaps: false,
          show: s.show ?? true,
          points: { show: x.length < 60 },
        })),
      ],
      axes: [{}, { size: 60 }],
      legend: { show: true },
    };
    const chart = new uPlot(options, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, element);
    plot.current = chart;
    const resize = new ResizeObserver(() => chart.setSize({ width: element.clientWidth || 800, height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series set changes; data updates go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height]);

  useEffect(() => {
    const chart = plot.current;
    if (!chart) return;
    chart.setData([x, ...series.map((s) => s.values)] as uPlot.AlignedData);
    series.forEach((s, i) => {
      const show = s.show ?? true;
      if (chart.series[i + 1].show !== show) chart.setSeries(i + 1, { show });
    });
  }, [x, series]);

  return <div className="chart" ref={container} data-testid={testId} data-points={x.length} />;
}
