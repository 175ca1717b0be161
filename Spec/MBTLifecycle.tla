---------------------------- MODULE MBTLifecycle ----------------------------
(***************************************************************************)
(* The state graph that the model-based tests walk                         *)
(* (Tests/ConformanceTests): Lifecycle's own, at the constants of the      *)
(* MBTLifecycle*.cfg configurations (SPECIFICATION Spec).                  *)
(*                                                                         *)
(* The implementation, like the kernel, runs some steps inline, in the     *)
(* same call as the step that made them due: percpu_ref_put runs release  *)
(* when the count reaches zero.  The tests stop the thread before each     *)
(* such release, so that any step the spec allows may come first.  The    *)
(* Swift users' release completes the requests it cancels inside itself,   *)
(* before it kills reqs, where the spec (like the kernel) completes them   *)
(* after the release: the tests reach those states with a completion that  *)
(* claimed its request before the release could cancel it, stopped before *)
(* its step.  Every state and transition is then one the implementation   *)
(* can be driven through.                                                  *)
(***************************************************************************)
EXTENDS Lifecycle
=============================================================================
