//! Fragments from peers are checked before they are decoded, let alone run. A fragment is a
//! serialized DataFusion physical plan, and that format can name CSV, JSON, Parquet, Avro and
//! Arrow scans and file sinks of any path (decoding some of them even panics). Only what
//! MiniTrue's own distributed planner sends is accepted: its `readings` scan (an extension
//! node without inputs, which [`crate::distributed`]'s codec decodes) and the compute
//! operators above it. The check runs on the protobuf itself, so a refused node is never
//! turned into an operator.

use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;

/// Deeper fragments are refused (MiniTrue's are a few operators deep).
pub const MAX_FRAGMENT_DEPTH: usize = 32;

/// Whether `plan` (a fragment's encoded physical plan) holds only operators MiniTrue sends;
/// the error names the first one it does not.
pub fn check_fragment(plan: &[u8]) -> Result<(), String> {
    let node = PhysicalPlanNode::decode(plan).map_err(|error| format!("not a plan: {error}"))?;
    check(&node, 0)
}

fn check(node: &PhysicalPlanNode, depth: usize) -> Result<(), String> {
    if depth > MAX_FRAGMENT_DEPTH {
        return Err(format!("nested deeper than {MAX_FRAGMENT_DEPTH} operators"));
    }
    let Some(kind) = &node.physical_plan_type else {
        return Err("an empty plan node".to_string());
    };
    let input = match kind {
        PhysicalPlanType::Extension(extension) if extension.inputs.is_empty() => None,
        PhysicalPlanType::Extension(_) => {
            return Err("an extension operator with inputs (a readings scan has none)".into())
        }
        PhysicalPlanType::Projection(node) => node.input.as_deref(),
        PhysicalPlanType::Filter(node) => node.input.as_deref(),
        PhysicalPlanType::Aggregate(node) => node.input.as_deref(),
        PhysicalPlanType::Sort(node) => node.input.as_deref(),
        PhysicalPlanType::CoalesceBatches(node) => node.input.as_deref(),
        PhysicalPlanType::Repartition(node) => node.input.as_deref(),
        PhysicalPlanType::Merge(node) => node.input.as_deref(),
        PhysicalPlanType::SortPreservingMerge(node) => node.input.as_deref(),
        PhysicalPlanType::GlobalLimit(node) => node.input.as_deref(),
        PhysicalPlanType::LocalLimit(node) => node.input.as_deref(),
        PhysicalPlanType::Cooperative(node) => node.input.as_deref(),
        other => {
            let debug = format!("{other:?}");
            let name = debug.split(['(', ' ', '{']).next().unwrap_or("an operator");
            return Err(format!("{name} is not an operator MiniTrue sends between nodes"));
        }
    };
    match input {
        Some(input) => check(input, depth + 1),
        None if matches!(kind, PhysicalPlanType::Extension(_)) => Ok(()),
        None => Err("an operator without its input".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion_proto::protobuf::{
        physical_plan_node, CsvScanExecNode, CsvSinkExecNode, FilterExecNode, PhysicalExtensionNode,
    };

    use super::*;

    fn encode(kind: PhysicalPlanType) -> Vec<u8> {
        PhysicalPlanNode { physical_plan_type: Some(kind) }.encode_to_vec()
    }

    fn scan() -> PhysicalPlanNode {
        PhysicalPlanNode {
            physical_plan_type: Some(PhysicalPlanType::Extension(PhysicalExtensionNode {
                node: b"{}".to_vec(),
                inputs: Vec::new(),
            })),
        }
    }

    #[test]
    fn file_scans_and_sinks_are_refused_before_decoding() {
        let csv = encode(PhysicalPlanType::CsvScan(CsvScanExecNode::default()));
        assert!(
            check_fragment(&csv).unwrap_err().starts_with("CsvScan"),
            "{:?}",
            check_fragment(&csv)
        );
        let sink = encode(PhysicalPlanType::CsvSink(Box::new(CsvSinkExecNode {
            input: Some(Box::new(scan())),
            ..Default::default()
        })));
        assert!(check_fragment(&sink).unwrap_err().starts_with("CsvSink"));
        // Hidden under an allowed operator, still found.
        let hidden = encode(PhysicalPlanType::Filter(Box::new(FilterExecNode {
            input: Some(Box::new(PhysicalPlanNode {
                physical_plan_type: Some(physical_plan_node::PhysicalPlanType::CsvScan(
                    CsvScanExecNode::default(),
                )),
            })),
            ..Default::default()
        })));
        assert!(check_fragment(&hidden).unwrap_err().starts_with("CsvScan"));
    }

    #[test]
    fn a_scan_under_compute_operators_passes_and_garbage_does_not() {
        let filter = encode(PhysicalPlanType::Filter(Box::new(FilterExecNode {
            input: Some(Box::new(scan())),
            ..Default::default()
        })));
        assert_eq!(check_fragment(&filter), Ok(()));
        assert!(check_fragment(b"\xff\xff\xff").is_err());
        assert!(check_fragment(&[]).is_err(), "an empty plan");
        let with_inputs = encode(PhysicalPlanType::Extension(PhysicalExtensionNode {
            node: Vec::new(),
            inputs: vec![scan()],
        }));
        assert!(check_fragment(&with_inputs).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let mut node = scan();
        for _ in 0..=MAX_FRAGMENT_DEPTH + 1 {
            node = PhysicalPlanNode {
                physical_plan_type: Some(PhysicalPlanType::Filter(Box::new(FilterExecNode {
                    input: Some(Box::new(node)),
                    ..Default::default()
                }))),
            };
        }
        assert!(check_fragment(&node.encode_to_vec()).unwrap_err().contains("deeper"));
    }
}
