{{ config(materialized='table', tags=['monitoring']) }}

{#- Decisions of each scored month: counts per decision and the approval rate. -#}

with

predictions as (
    select * from {{ source('creditflow', 'predictions') }}
),

month_decisions as (
    select
        score_month as month,
        min(model_id) as model_id,
        count(*) as scored_rows,
        cast(sum(case when decision = 'approve' then 1 else 0 end) as {{ dbt.type_bigint() }})
            as approved,
        cast(sum(case when decision = 'review' then 1 else 0 end) as {{ dbt.type_bigint() }})
            as reviewed,
        cast(sum(case when decision = 'decline' then 1 else 0 end) as {{ dbt.type_bigint() }})
            as declined,
        avg(default_probability) as mean_default_probability
    from predictions
    group by score_month
),

final as (
    select
        month,
        model_id,
        scored_rows,
        approved,
        reviewed,
        declined,
        approved / cast(nullif(scored_rows, 0) as {{ type_double() }}) as approval_rate,
        reviewed / cast(nullif(scored_rows, 0) as {{ type_double() }}) as review_rate,
        declined / cast(nullif(scored_rows, 0) as {{ type_double() }}) as decline_rate,
        mean_default_probability
    from month_decisions
)

select * from final
